/**
 * When does a call stop holding memory? For a unary response, only after grpc-js wrote the message
 * into the HTTP/2 stream and sent the status (or the client went away); grpc-js tells a handler
 * neither. This server interceptor (grpc-js's public interceptor API) runs the functions registered
 * for a call when its status is sent or it is cancelled, whichever is first. Calls are matched by
 * their request Metadata object, which grpc-js hands unchanged to both the interceptor and the
 * handler (`call.metadata`).
 */
import { ServerInterceptingCall, type Metadata, type ServerInterceptor } from '@grpc/grpc-js';

const endHooks = new WeakMap<Metadata, Array<() => void>>();

/** Runs `fn` once when the call whose request metadata is `metadata` ends; at once if unknown. */
export function onCallEnd(metadata: Metadata, fn: () => void): void {
  const hooks = endHooks.get(metadata);
  if (hooks === undefined) return fn();
  hooks.push(fn);
}

/** Paths whose handlers register end hooks; other calls pass through untouched (no per-call cost). */
export function callEndInterceptor(paths: ReadonlySet<string>): ServerInterceptor {
  return (method, call) => {
    if (!paths.has(method.path)) return call as ServerInterceptingCall;
    let metadata: Metadata | null = null;
    const fire = (): void => {
      if (metadata === null) return;
      const hooks = endHooks.get(metadata);
      endHooks.delete(metadata);
      for (const fn of hooks ?? []) fn();
    };
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(md, nextMd) {
            metadata = md;
            endHooks.set(md, []);
            nextMd(md);
          },
          onCancel() {
            fire();
          },
        });
      },
      sendStatus(status, next) {
        next(status);
        fire();
      },
    });
  };
}
