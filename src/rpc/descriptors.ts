/**
 * The API's .proto files loaded at run time with @grpc/proto-loader. Server reflection needs file
 * descriptors (ts-proto's generated code does not carry them), and tests use the same definition as a
 * "client in another language" that knows nothing of our generated TypeScript.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';

export const PROTO_FILES = ['sluice/v1/records.proto', 'sluice/v1/admin.proto', 'sluice/v1/broker.proto'] as const;

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
  cached ??= protoLoader.loadSync([...PROTO_FILES], {
    includeDirs: [protoRoot()],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return cached;
}
