/**
 * Goal: a client in another language can learn the whole API from a running broker: reflection serves
 * the real .proto files under their own names with their imports (google.rpc.ErrorInfo included, so
 * error details decode), health answers for every service the server lists, and docs/api.md's Python
 * recipes work with Debian's packages.
 * Method: spawn `sluice serve`; ask it with a gRPC reflection client built from @grpc/reflection's
 * reflection.proto; check grpc.health.v1 for each listed service; then, where Debian's protoc,
 * grpc_python_plugin, grpc-proto and python3-grpcio are installed (.ci/run installs them), run the
 * documented protoc commands and docs/examples/grpc_reflect.py against the broker. Without them the
 * Python part is skipped with a warning (and fails under CI).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { spawnBroker, type BrokerProcess } from '../../bench/broker-process.js';
import { tempDir } from './helpers.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
let broker: BrokerProcess;

beforeAll(async () => {
  broker = await spawnBroker(tempDir('sluice-reflection-'));
});
afterAll(() => {
  broker?.child.kill('SIGKILL');
});

/** One reflection request on a fresh stream; resolves with the first reply. */
async function reflect(request: object): Promise<any> {
  const protoFile = path.resolve('node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto');
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(protoFile, { keepCase: true })) as any;
  const client = new pkg.grpc.reflection.v1.ServerReflection(broker.grpcAddress, grpc.credentials.createInsecure());
  try {
    const stream = client.ServerReflectionInfo({ deadline: Date.now() + 10_000 });
    const reply = new Promise<any>((resolve, reject) => {
      stream.once('data', resolve);
      stream.once('error', reject);
    });
    stream.write(request);
    stream.end();
    return await reply;
  } finally {
    client.close();
  }
}

function fileNames(reply: any): string[] {
  expect(reply.error_response ?? null).toBeNull();
  return reply.file_descriptor_response.file_descriptor_proto.map((b: Buffer) => fromBinary(FileDescriptorProtoSchema, b).name);
}

describe('reflection and health for other languages', () => {
  it('serves the real files by name, with their imports', async () => {
    const broker_ = fileNames(await reflect({ file_by_filename: 'sluice/v1/broker.proto' }));
    expect(broker_[0]).toBe('sluice/v1/broker.proto');
    expect(broker_).toEqual(expect.arrayContaining(['sluice/v1/records.proto', 'sluice/v1/admin.proto']));
    expect(fileNames(await reflect({ file_containing_symbol: 'sluice.v1.Groups' }))[0]).toBe('sluice/v1/groups.proto');
    expect(fileNames(await reflect({ file_containing_symbol: 'google.rpc.ErrorInfo' }))[0]).toBe('google/rpc/error_details.proto');
    const status = fileNames(await reflect({ file_containing_symbol: 'google.rpc.Status' }));
    expect(status).toEqual(['google/rpc/status.proto', 'google/protobuf/any.proto']);
    const missing = await reflect({ file_by_filename: 'sluice/v1/nope.proto' });
    expect(missing.error_response.error_code).toBe(grpc.status.NOT_FOUND);
  });

  it('reports SERVING for every service it lists, and NOT_FOUND for others', async () => {
    const services: string[] = (await reflect({ list_services: '*' })).list_services_response.service.map((s: any) => s.name);
    expect(services).toEqual(expect.arrayContaining(['sluice.v1.Admin', 'sluice.v1.Broker', 'sluice.v1.Groups', 'grpc.health.v1.Health']));
    const health = grpc.loadPackageDefinition(protoLoader.loadSync(healthProtoPath, { enums: String })) as any;
    const hc = new health.grpc.health.v1.Health(broker.grpcAddress, grpc.credentials.createInsecure());
    const check = (service: string): Promise<any> =>
      new Promise((resolve) => hc.check({ service }, { deadline: Date.now() + 10_000 }, (err: any, res: any) => resolve(err ?? res)));
    try {
      for (const s of ['', ...services.filter((s) => s.startsWith('sluice.'))]) expect((await check(s)).status, s).toBe('SERVING');
      expect((await check('sluice.v1.Nope')).code).toBe(grpc.status.NOT_FOUND);
    } finally {
      hc.close();
    }
  });
});

const PYTHON = '/usr/bin/python3';
const tools = {
  grpcio: spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { stdio: 'ignore' }).status === 0,
  protoc: spawnSync('protoc', ['--version'], { stdio: 'ignore' }).status === 0,
  plugin: fs.existsSync('/usr/bin/grpc_python_plugin'),
  grpcProto: fs.existsSync('/usr/share/grpc-proto/grpc/reflection/v1/reflection.proto'),
  wkt: fs.existsSync('/usr/include/google/protobuf/any.proto'),
};
const missing = Object.entries(tools).filter(([, ok]) => !ok).map(([name]) => name);
if (missing.length > 0) {
  if (process.env.CI) throw new Error(`missing in CI: ${missing.join(', ')} (.ci/run must apt-get install them)`);
  console.warn(`\n*** SKIPPED docs/api.md Python recipes: missing ${missing.join(', ')} (apt-get install -y protobuf-compiler protobuf-compiler-grpc libprotobuf-dev grpc-proto python3-grpcio python3-protobuf) ***\n`);
}

// The exact commands docs/api.md gives; the test fails if the doc stops saying them.
const STUBS_COMMAND =
  'protoc -I proto -I /usr/include --python_out=gen --grpc_python_out=gen --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin proto/sluice/v1/*.proto proto/google/rpc/*.proto';
const REFLECTION_COMMAND =
  'protoc -I /usr/share/grpc-proto/grpc/reflection/v1 --python_out=gen --grpc_python_out=gen --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin reflection.proto';

function sh(command: string, cwd: string): void {
  execFileSync('bash', ['-c', command], { cwd, stdio: 'pipe', timeout: 60_000 });
}

describe.skipIf(missing.length > 0)("docs/api.md's Python recipes, with Debian's packages", () => {
  const docs = fs.readFileSync('docs/api.md', 'utf8');

  it('generates stubs with protoc that call the broker and decode ErrorInfo', async () => {
    expect(docs).toContain(STUBS_COMMAND);
    const work = tempDir('sluice-pystubs-');
    fs.cpSync('proto', path.join(work, 'proto'), { recursive: true });
    fs.mkdirSync(path.join(work, 'gen'));
    sh(STUBS_COMMAND, work);
    const script = `
import sys
sys.path.insert(0, "gen")
import grpc
from sluice.v1 import admin_pb2, admin_pb2_grpc, broker_pb2, broker_pb2_grpc
from google.rpc import status_pb2, error_details_pb2
ch = grpc.insecure_channel(sys.argv[1])
admin_pb2_grpc.AdminStub(ch).CreateTopic(admin_pb2.CreateTopicRequest(name="py-stubs", partitions=2), timeout=10)
print(broker_pb2_grpc.BrokerStub(ch).GetMetadata(broker_pb2.GetMetadataRequest(), timeout=10).topics[0].name)
try:
    broker_pb2_grpc.BrokerStub(ch).Fetch(broker_pb2.FetchRequest(topic="nope"), timeout=10)
except grpc.RpcError as e:
    status = status_pb2.Status.FromString(dict(e.trailing_metadata())["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    print(e.code().name, info.reason, info.domain)
`;
    const out = execFileSync(PYTHON, ['-c', script, broker.grpcAddress], { cwd: work, encoding: 'utf8', timeout: 60_000 });
    expect(out.trim().split('\n')).toEqual(['py-stubs', 'NOT_FOUND UNKNOWN_TOPIC sluice.dev']);
  });

  it('runs docs/examples/grpc_reflect.py: list, call, and an error decoded through reflection', async () => {
    expect(docs).toContain(REFLECTION_COMMAND);
    const work = tempDir('sluice-pyreflect-');
    fs.mkdirSync(path.join(work, 'gen'));
    sh(REFLECTION_COMMAND, work);
    const run = (...args: string[]) =>
      spawnSync(PYTHON, [path.resolve('docs/examples/grpc_reflect.py'), broker.grpcAddress, ...args], {
        cwd: work,
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, PYTHONPATH: path.join(work, 'gen') },
      });
    const list = run('list');
    expect(list.stderr).toBe('');
    expect(list.stdout.trim().split('\n')).toEqual(expect.arrayContaining(['sluice.v1.Admin', 'sluice.v1.Broker', 'sluice.v1.Groups', 'grpc.health.v1.Health']));
    expect(JSON.parse(run('call', 'sluice.v1.Admin/CreateTopic', '{"name":"py-reflect","partitions":1}').stdout).topic.name).toBe('py-reflect');
    const produced = run('call', 'sluice.v1.Broker/Produce', '{"topic":"py-reflect","records":[{"key":"azE=","value":"aGVsbG8="}]}');
    expect(produced.status).toBe(0);
    expect(JSON.parse(produced.stdout)).toHaveProperty('appendTimeMs'); // partition 0 and offset 0 are defaults, so JSON omits them
    expect(JSON.parse(run('call', 'grpc.health.v1.Health/Check', '{"service":"sluice.v1.Groups"}').stdout)).toEqual({ status: 'SERVING' });
    const failed = run('call', 'sluice.v1.Broker/Fetch', '{"topic":"nope","partition":0}');
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain('code: NOT_FOUND');
    expect(failed.stderr).toMatch(/"@type": "type.googleapis.com\/google.rpc.ErrorInfo", "reason": "UNKNOWN_TOPIC", "domain": "sluice.dev"/);
    expect(run('describe', 'sluice.v1.FetchRequest').stdout).toContain('sluice.v1.FetchRequest (in sluice/v1/broker.proto)');
  });
});
