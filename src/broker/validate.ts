/**
 * Input checks for the admin and data APIs. Each throws a typed SluiceError with a message that names
 * the bad value and the rule, before anything is written.
 */
import { SluiceError } from '../errors.js';
import { BROKER_PARTITIONS_MAX, TOPIC_NAME_LENGTH_MAX, TOPIC_PARTITIONS_MAX } from '../constants.js';
import { LOG_CONFIG_KEYS, logConfigFromTopicConfigs } from '../storage/index.js';
import type { LogConfig } from '../storage/types.js';

const TOPIC_NAME_RE = /^[a-zA-Z0-9._-]+$/;
/** Names starting with this are reserved for internal topics (consumer offsets, later). */
export const INTERNAL_TOPIC_PREFIX = '__';
const KNOWN_CONFIG_KEYS: ReadonlySet<string> = new Set<string>(LOG_CONFIG_KEYS);

export function validateTopicName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0) throw new SluiceError('INVALID_TOPIC_NAME', 'topic name must not be empty');
  if (name.length > TOPIC_NAME_LENGTH_MAX) {
    throw new SluiceError('INVALID_TOPIC_NAME', `topic name is ${name.length} characters; the limit is ${TOPIC_NAME_LENGTH_MAX}`);
  }
  if (name === '.' || name === '..') throw new SluiceError('INVALID_TOPIC_NAME', `topic name cannot be '${name}'`);
  if (!TOPIC_NAME_RE.test(name)) {
    throw new SluiceError('INVALID_TOPIC_NAME', `topic name '${name}' may contain only ASCII letters, digits, '.', '_' and '-'`);
  }
}

/** For topics created by users: the internal prefix is reserved. */
export function validateUserTopicName(name: unknown): asserts name is string {
  validateTopicName(name);
  if (name.startsWith(INTERNAL_TOPIC_PREFIX)) {
    throw new SluiceError('INVALID_TOPIC_NAME', `topic names starting with '${INTERNAL_TOPIC_PREFIX}' are reserved for internal topics`);
  }
}

/**
 * Internal topics (`__consumer_offsets`, …) hold the broker's own state: a client that produced to,
 * re-configured, grew or deleted one could wipe every group's offsets. Only the broker's own
 * subsystems (through Broker.internalView()) change them; clients may still read them.
 */
export function refuseInternalTopic(name: string, action: string): void {
  if (name.startsWith(INTERNAL_TOPIC_PREFIX)) {
    throw new SluiceError('INTERNAL_TOPIC', `topic '${name}' is internal (names starting with '${INTERNAL_TOPIC_PREFIX}' belong to the broker); clients may not ${action} it`);
  }
}

export function validatePartitionCount(partitions: unknown): asserts partitions is number {
  if (typeof partitions !== 'number' || !Number.isInteger(partitions) || partitions < 1 || partitions > TOPIC_PARTITIONS_MAX) {
    throw new SluiceError('INVALID_PARTITIONS', `partitions must be an integer from 1 to ${TOPIC_PARTITIONS_MAX}, got ${String(partitions)}`);
  }
}

/** Refuses, before anything is created, partitions that would take the broker past its limit. */
export function validateBrokerPartitions(held: number, adding: number, max = BROKER_PARTITIONS_MAX): void {
  if (held + adding > max) {
    throw new SluiceError(
      'INVALID_PARTITIONS',
      `this broker holds ${held} partitions; adding ${adding} would exceed its limit of ${max} (each open partition keeps 3 files open)`,
    );
  }
}

/** A single node holds one copy of each partition. 0 (protobuf's unset) means the default, 1. */
export function normalizeReplicationFactor(rf: unknown): number {
  if (rf === 0 || rf === undefined) return 1;
  if (rf !== 1) {
    throw new SluiceError('INVALID_REPLICATION_FACTOR', `replication factor ${String(rf)} is impossible on a single-node broker; use 1`);
  }
  return 1;
}

export function validateConfigKey(key: string): void {
  if (!KNOWN_CONFIG_KEYS.has(key)) {
    throw new SluiceError('INVALID_CONFIG', `unknown topic config '${key}'; known keys: ${[...KNOWN_CONFIG_KEYS].join(', ')}`);
  }
}

/** Rejects unknown keys and bad values; returns the effective log config. */
export function logConfigFor(configs: Record<string, string>): LogConfig {
  for (const key of Object.keys(configs)) {
    validateConfigKey(key);
    if (typeof configs[key] !== 'string') throw new SluiceError('INVALID_CONFIG', `topic config '${key}' must be a string`);
  }
  return logConfigFromTopicConfigs(configs);
}

export function validateOffset(offset: unknown): asserts offset is number {
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
    throw new SluiceError('INVALID_OFFSET', `offset must be a non-negative integer, got ${String(offset)}`);
  }
}
