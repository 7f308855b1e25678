/**
 * The API's .proto files loaded at run time with @grpc/proto-loader. Server reflection needs file
 * descriptors (ts-proto's generated code does not carry them), and tests use the same definition as a
 * "client in another language" that knows nothing of our generated TypeScript.
 */
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';

/** Every public API file: all of proto/sluice/v1 (Admin, Broker, and services other modules add). */
export function protoFiles(): string[] {
  return readdirSync(join(protoRoot(), 'sluice', 'v1'))
    .filter((f) => f.endsWith('.proto'))
    .sort()
    .map((f) => `sluice/v1/${f}`);
}

/** The package's proto/ directory, found by walking up from this file (src/rpc or dist/src/rpc). */
export function protoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, 'sluice', 'v1', 'broker.proto'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the proto/ directory of the sluice package');
    dir = parent;
  }
}

let cached: protoLoader.PackageDefinition | undefined;

/** The sluice.v1 package definition (int64s as strings, absent optionals left undefined). */
export function loadSluiceDefinition(): protoLoader.PackageDefinition {
  cached ??= protoLoader.loadSync(protoFiles(), {
    includeDirs: [protoRoot()],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return cached;
}
