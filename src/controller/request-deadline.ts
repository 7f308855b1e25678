/**
 * The deadline of the client call a controller request serves, as wall-clock ms (Date.now()), carried
 * to `Controller.submit` without threading it through every admin method. The admin service sets it
 * for the calls that change metadata; `submit` stops re-sending (after a timeout, a lost leader, a
 * dropped proposal) once it passes. Without it a request the client gave up on could be sent again
 * seconds later and land after the client's next request: a decommission re-sent after the operator's
 * recommission started the drain again (chaos finding E). Unset (the executor, groups, tests), the
 * controller's own request timeout is the only bound.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export const requestDeadline = new AsyncLocalStorage<number>();

/** Runs `work` with the call deadline `deadlineMs` (wall clock; Infinity or NaN: none) in scope. */
export function withRequestDeadline<T>(deadlineMs: number, work: () => Promise<T>): Promise<T> {
  return Number.isFinite(deadlineMs) ? requestDeadline.run(deadlineMs, work) : work();
}
