/** Shared by the end-to-end tests: a client loaded at run time from the .proto files, and temp dirs. */
import { afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSluiceDefinition, readErrorInfo } from '../../src/rpc/index.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
export type DynClient = grpc.Client & Record<string, any>;

/** Clients built by @grpc/proto-loader, as a user of another language would: no generated TS. */
export function dynamicClients(address: string): { broker: DynClient; admin: DynClient; close(): void } {
  const pkg = grpc.loadPackageDefinition(loadSluiceDefinition()) as any;
  const opts = { 'grpc.max_receive_message_length': 64 << 20 };
  const broker = new pkg.sluice.v1.Broker(address, grpc.credentials.createInsecure(), opts) as DynClient;
  const admin = new pkg.sluice.v1.Admin(address, grpc.credentials.createInsecure(), opts) as DynClient;
  return { broker, admin, close: () => (broker.close(), admin.close()) };
}

export function call<T = any>(client: DynClient, method: string, request: object, deadlineMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
  });
}

/** Awaits a call that must fail; returns its status code and ErrorInfo reason. */
export async function failure(p: Promise<unknown>): Promise<{ code: grpc.status; reason: string | undefined; details: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { code: e.code, reason: readErrorInfo(e.metadata)?.reason, details: e.details };
  }
  throw new Error('expected the call to fail, it succeeded');
}

const created: string[] = [];
// Registered on the importing test file's root suite: its temp dirs go when its tests are done.
afterAll(() => {
  for (const dir of created.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory under the OS temp dir, removed when the test process exits. */
export function tempDir(prefix = 'sluice-e2e-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  created.push(dir);
  return dir;
}
