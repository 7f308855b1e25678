/**
 * Goal: the TypeScript client refuses numbers the wire cannot carry, and addresses grpc-js would
 * misread, with a SluiceError that names the field and the range, before anything is sent (no more
 * INTERNAL "serialization failure"). Transport failures are explained in the user's terms.
 * Method: call the client with bad values against an address where nothing listens (so a check that
 * let a value through would fail with UNAVAILABLE instead of the expected code), and feed
 * explainTransportError the messages grpc-js produces.
 */
import { describe, expect, it } from 'vitest';
import { Admin, Consumer, GroupAdmin, Producer, brokerList } from '../../src/client/index.js';
import { explainTransportError, normalizeBrokerAddress } from '../../src/client/connection.js';
import { SluiceError, isSluiceError } from '../../src/errors.js';
import { TOPIC_PARTITIONS_MAX } from '../../src/constants.js';

const nowhere = '127.0.0.1:1';

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<SluiceError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    if (!isSluiceError(err)) throw err;
    return err;
  }
  throw new Error('expected a failure');
}

describe('client input checks', () => {
  it('normalizes broker addresses: a bare host gets port 7070, bad ones are refused', async () => {
    expect(normalizeBrokerAddress('localhost')).toBe('localhost:7070');
    expect(normalizeBrokerAddress(' 10.0.0.1:9000 ')).toBe('10.0.0.1:9000');
    expect(normalizeBrokerAddress('[::1]')).toBe('[::1]:7070');
    expect(normalizeBrokerAddress('[::1]:7071')).toBe('[::1]:7071');
    expect(brokerList('a, b:1')).toEqual(['a:7070', 'b:1']);
    for (const [bad, why] of [['http://h:1', /no scheme/], ['h:0', /port must be from 1 to 65535/], ['h:', /port/], ['::1', /brackets/], ['a b', /not a host/]] as const) {
      const err = await rejection(() => normalizeBrokerAddress(bad));
      expect(err.code).toBe('INVALID_REQUEST');
      expect(err.message).toMatch(why);
    }
  });

  it('refuses out-of-range numbers before sending', async () => {
    const offset = await rejection(() => new Consumer({ brokers: nowhere, topic: 't', from: 2 ** 60 }));
    expect(offset.code).toBe('INVALID_OFFSET');
    expect(offset.message).toMatch(/from must be an integer from 0 to 9007199254740991/);
    expect((await rejection(() => new Consumer({ brokers: nowhere, topic: 't', partitions: [1e12] }))).message).toMatch(new RegExp(`partitions\\[\\] must be an integer from 0 to ${TOPIC_PARTITIONS_MAX - 1}`));
    expect((await rejection(() => new Consumer({ brokers: nowhere, topic: 't', maxWaitMs: 2 ** 40 }))).message).toMatch(/maxWaitMs/);
    expect((await rejection(() => new Consumer({ brokers: nowhere, topic: 't', from: { fromEnd: -1 } }))).code).toBe('INVALID_OFFSET');

    const producer = new Producer({ brokers: nowhere });
    try {
      expect((await rejection(producer.send('t', { value: 'v', partition: 1e12 }))).message).toMatch(new RegExp(`partition must be an integer from 0 to ${TOPIC_PARTITIONS_MAX - 1}`));
      expect((await rejection(producer.send('t', { value: 'v', partition: 0, timestampMs: 1.5 }))).message).toMatch(/timestampMs/);
      expect((await rejection(producer.produceRaw('t', -1, new Uint8Array(1)))).message).toMatch(/partition/);
    } finally {
      await producer.close();
    }
    const admin = new Admin({ brokers: nowhere, requestTimeoutMs: 2_000 });
    try {
      expect((await rejection(admin.createTopic('t', { partitions: 2 ** 40 }))).message).toMatch(/partitions must be an integer from 0 to 2147483647/);
      expect((await rejection(admin.listOffsets('t', { timestampMs: 2 ** 60 }))).message).toMatch(/timestampMs/);
    } finally {
      admin.close();
    }
    const groups = new GroupAdmin({ brokers: nowhere });
    try {
      expect((await rejection(groups.resetOffsets('g', [], { offset: 2 ** 60 }, false))).code).toBe('INVALID_OFFSET');
    } finally {
      groups.close();
    }
    expect((await rejection(() => new Admin({ brokers: nowhere, requestTimeoutMs: 0 }))).message).toMatch(/requestTimeoutMs/);
  });

  it('explains transport failures and keeps their codes', () => {
    const explain = (code: SluiceError['code'], message: string) => explainTransportError(new SluiceError(code, message), 'h:7071', 1500);
    const timeout = explain('TIMEOUT', 'Deadline exceeded after 30.006s,name resolution: 0.001s,LB pick: 30.0s');
    expect(timeout.code).toBe('TIMEOUT');
    expect(timeout.message).toMatch(/^no answer from h:7071 within 1500 ms: .*raise the timeout/);
    const http = explain('UNAVAILABLE', 'No connection established. Last error: Protocol error (2026-12-02). Resolution note: ');
    expect(http.message).toMatch(/h:7071 answered, but not as a gRPC server: is that the broker's HTTP port\?/);
    expect(http.retriable).toBe(true);
    expect(explain('UNAVAILABLE', 'connect ECONNREFUSED 1.2.3.4:1').message).toBe('cannot connect to h:7071 (connection refused)');
    const ser = explain('INTERNAL', 'Request message serialization failure: invalid int32: 99999999999');
    expect(ser.code).toBe('INVALID_REQUEST');
    expect(ser.message).toMatch(/out of range \(invalid int32: 99999999999\)/);
    const other = new SluiceError('UNKNOWN_TOPIC', 'x');
    expect(explainTransportError(other, 'h:1', 1)).toBe(other);
  });
});
