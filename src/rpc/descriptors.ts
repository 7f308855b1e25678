/**
 * The API's .proto files at run time. Server reflection needs file descriptors (ts-proto's generated
 * code does not carry them): it serves the descriptor set buf builds at build time. Tests load the
 * .proto files with @grpc/proto-loader as a "client in another language" that knows nothing of our
 * generated TypeScript.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';

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

/**
 * The API's real file descriptors, built by `buf build` at build time: `npm run build` writes
 * dist/descriptors.binpb (every file of proto/ under its own name, such as sluice/v1/broker.proto and
 * google/rpc/error_details.proto, with their imports, such as google/protobuf/any.proto) and
 * dist/health.binpb (grpc.health.v1, from the grpc-health-check package).
 */
export function descriptorSetPaths(): { sluice: string; health: string } {
  const dist = join(dirname(protoRoot()), 'dist');
  return { sluice: join(dist, 'descriptors.binpb'), health: join(dist, 'health.binpb') };
}

/** grpc-health-check keeps health.proto under health/v1/; grpc's own servers serve it under this name. */
const HEALTH_FILE_NAME = 'grpc/health/v1/health.proto';

function readDescriptorSet(path: string): FileDescriptorProto[] {
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`npm run build\` (it writes the descriptor sets with buf)`);
  return fromBinary(FileDescriptorSetSchema, readFileSync(path)).file;
}

/** Each FileDescriptorProto of the build-time descriptor sets, serialized, dependencies before dependents. */
export function loadFileDescriptors(): Uint8Array[] {
  const paths = descriptorSetPaths();
  const health = readDescriptorSet(paths.health).map((f) => (f.name.endsWith('health/v1/health.proto') ? { ...f, name: HEALTH_FILE_NAME } : f));
  // Internal node-to-node services (package sluice.cluster.*) are not offered to clients, as internal
  // `__` topics are not listed: reflection serves the public API only.
  const sluice = readDescriptorSet(paths.sluice).filter((f) => !f.package.startsWith('sluice.cluster.'));
  return [...sluice, ...health].map((f) => toBinary(FileDescriptorProtoSchema, f));
}

/**
 * What @grpc/reflection indexes. It reads only the `fileDescriptorProtos` of each entry, so one entry
 * carrying every real file is enough. (proto-loader's own definitions merge a package's files into one
 * synthetic file, leave out files no service references, such as google/rpc/error_details.proto, and
 * write map fields that other languages' descriptor pools reject.)
 */
export function reflectionFiles(): protoLoader.PackageDefinition {
  const fileDescriptorProtos = loadFileDescriptors().map((b) => Buffer.from(b));
  const entry = { format: 'Protocol Buffer 3 FileDescriptorProto', type: {}, fileDescriptorProtos } as unknown as protoLoader.MessageTypeDefinition<object, object>;
  return { 'sluice.reflection.files': entry };
}
