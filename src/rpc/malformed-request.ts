/**
 * Undecodable requests are the client's error (INVALID_ARGUMENT, reason MALFORMED_REQUEST), not ours.
 *
 * grpc-js calls a method's `requestDeserialize` itself and turns anything it throws into INTERNAL
 * ("Error deserializing request"), before any handler runs. So the fix has two halves:
 *  - `tolerantDefinition` wraps every method's deserializer: a throw becomes a `MalformedRequest`
 *    value carrying what went wrong, instead of an exception grpc-js would answer for us;
 *  - `malformedRequestInterceptor`, a server interceptor, sees each decoded message before the
 *    handler does and answers a `MalformedRequest` with INVALID_ARGUMENT and our ErrorInfo. The handler
 *    never sees it, so this covers unary and streaming methods alike, ours and the health and
 *    reflection services'.
 */
import {
  ResponderBuilder,
  ServerInterceptingCall,
  ServerListenerBuilder,
  type ServerInterceptor,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { SluiceError } from '../errors.js';
import { toServiceError } from './errors.js';

const MALFORMED = Symbol('sluice.malformedRequest');

/** What a wrapped deserializer returns for bytes it cannot decode. */
export interface MalformedRequest {
  readonly [MALFORMED]: string;
}

export function isMalformedRequest(message: unknown): message is MalformedRequest {
  return typeof message === 'object' && message !== null && MALFORMED in message;
}

function tolerant(path: string, deserialize: (bytes: Buffer) => unknown): (bytes: Buffer) => unknown {
  return (bytes) => {
    try {
      return deserialize(bytes);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      return { [MALFORMED]: `the ${bytes.length}-byte request to ${path} is not a valid protobuf message of its type: ${why}` };
    }
  };
}

/** The same service with every request deserializer made non-throwing (see the file comment). */
export function tolerantDefinition<T extends ServiceDefinition>(definition: T): T {
  const out: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    out[name] = { ...method, requestDeserialize: tolerant(method.path, method.requestDeserialize as (b: Buffer) => unknown) };
  }
  return out as T;
}

/** Answers a MalformedRequest with INVALID_ARGUMENT / MALFORMED_REQUEST; passes everything else on. */
export const malformedRequestInterceptor: ServerInterceptor = (_method, call) => {
  const intercepting: ServerInterceptingCall = new ServerInterceptingCall(
    call,
    new ResponderBuilder()
      .withStart((next) => {
        next(
          new ServerListenerBuilder()
            .withOnReceiveMessage((message, nextMessage) => {
              if (!isMalformedRequest(message)) return nextMessage(message);
              const err = toServiceError(new SluiceError('MALFORMED_REQUEST', message[MALFORMED]));
              intercepting.sendStatus({ code: err.code, details: err.details ?? err.message, metadata: err.metadata });
            })
            .build(),
        );
      })
      .build(),
  );
  return intercepting;
};
