/**
 * `--net netns`: each node of a chaos cluster is a host of its own, a Linux network namespace, and a
 * partition is cut in the kernel instead of in a proxy (root on Linux only).
 *
 * Layout of a run whose host block is N (`--hosts-from N`; names and subnet reuse N so two runs side
 * by side never collide):
 *  - a bridge `slc-N-br` in the root namespace, holding the harness's address 10.211.N.254/24;
 *  - per node i a namespace `sluice-N-i`: loopback up, `eth0` = 10.211.N.i/24 (a veth whose other end
 *    `slc-N-i` is a port of the bridge), and a sink veth `cut0` that is up but whose peer is down,
 *    so whatever is routed to it is dropped without a word (counted as its tx_dropped);
 *  - the broker runs as `ip netns exec sluice-N-i <argv>`: `ip` execs the command, so the child's pid
 *    is the broker's, and kill -9 and SIGSTOP reach it as before.
 *
 * "i cannot send to j" is the route `10.211.N.j/32 dev cut0` in i's namespace. Why not a blackhole
 * route: for a local sender the kernel refuses a blackhole route at once (connect() fails with
 * EINVAL), which a real partition never does; a route to the sink drops the packets, and a connect
 * hangs until its own timeout, as across a real partition. Why not iptables or nft: neither is
 * installed here (a new Debian package for CI), and the kernel's tc drop action (act_gact) and dummy
 * devices are not built; routes and veths need nothing but iproute2. Healing deletes the routes;
 * connections that lost packets recover by TCP retransmission, as after a real partition heals.
 *
 * The harness's own traffic (the workload's clients, probes, the final read) goes from the bridge
 * address to a node and is never cut, as with the proxies. Everything here runs `ip` with a bound.
 */
import { execFile, execFileSync } from 'node:child_process';
import type { LinkSetting } from './links.js';
import { NETNS_CMD_MS, NETNS_HARNESS_HOST, NETNS_SUBNET_PREFIX } from './constants.js';

/** How a chaos cluster's nodes are wired: loopback and TCP proxies (links.ts), or namespaces (here). */
export const NET_MODES = ['proxy', 'netns'] as const;
export type NetMode = (typeof NET_MODES)[number];

/** `ip ARGS`, synchronous and bounded (setup and teardown). */
function ip(args: readonly string[], input?: string): string {
  return execFileSync('ip', args, { input, timeout: NETNS_CMD_MS, stdio: ['pipe', 'pipe', 'pipe'], encoding: 'utf8' });
}

/** `ip ARGS` without blocking the harness's event loop (cuts and heals during a run), bounded. */
function ipAsync(args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('ip', args, { timeout: NETNS_CMD_MS, encoding: 'utf8' }, (err, stdout, stderr) => (err ? reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve(stdout)));
    // `ip` may exit before it reads its stdin (EPIPE): its exit status is what reports a failure.
    child.stdin?.on('error', () => {});
    if (input === undefined) child.stdin?.end();
    else child.stdin?.end(input);
  });
}

/** Why this process cannot run `--net netns`, or null when it can (root on Linux, `ip netns` works). */
export function netnsUnavailable(): string | null {
  if (process.platform !== 'linux') return `--net netns needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return '--net netns needs root (it creates network namespaces, veths and a bridge)';
  try {
    ip(['netns', 'list']);
  } catch (err) {
    return `--net netns needs a working \`ip netns\` (iproute2): ${(err as Error).message.split('\n')[0]}`;
  }
  return null;
}

/** The names and addresses of host block N: stable, so a crashed run's leftovers are found by name. */
export function netnsNames(hostBase: number): { ns: (id: number) => string; hostVeth: (id: number) => string; bridge: string; address: (id: number) => string; harness: string } {
  const subnet = `${NETNS_SUBNET_PREFIX}.${hostBase}`;
  return {
    ns: (id) => `sluice-${hostBase}-${id}`,
    hostVeth: (id) => `slc-${hostBase}-${id}`,
    bridge: `slc-${hostBase}-br`,
    address: (id) => `${subnet}.${id}`,
    harness: `${subnet}.${NETNS_HARNESS_HOST}`,
  };
}

/** Every namespace and link of host block N that exists now (a live run's, or a crashed one's). */
export function netnsLeftovers(hostBase: number): { namespaces: string[]; links: string[] } {
  const nsRe = new RegExp(`^sluice-${hostBase}-\\d+$`);
  const linkRe = new RegExp(`^slc-${hostBase}-(\\d+|br)$`);
  const namespaces = ip(['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => nsRe.test(n));
  const links = (JSON.parse(ip(['-j', 'link', 'show'])) as { ifname: string }[]).map((l) => l.ifname).filter((n) => linkRe.test(n));
  return { namespaces, links };
}

/**
 * Removes every namespace and link of host block N, never throwing: the host ends of the veths and
 * the bridge first (deleting a veth end deletes its peer at once, while a namespace lingers until its
 * last process exits), then the processes left in the namespaces (a crashed run's brokers: nothing
 * else runs there) and the namespaces' names.
 */
export function removeNetns(hostBase: number): void {
  let left: { namespaces: string[]; links: string[] };
  try {
    left = netnsLeftovers(hostBase);
  } catch {
    return; // no `ip`: nothing of ours can exist
  }
  for (const link of left.links) {
    try {
      ip(['link', 'del', link]);
    } catch {
      // gone with its peer already
    }
  }
  for (const ns of left.namespaces) {
    try {
      for (const pid of ip(['netns', 'pids', ns]).split('\n').filter((p) => /^\d+$/.test(p))) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // the namespace or the process is gone
    }
    try {
      ip(['netns', 'del', ns]);
    } catch {
      // already deleted
    }
  }
}

/** Host blocks with a network up in this process, so a signal handler can take them down (`teardownAllNetns`). */
const live = new Set<number>();

/** Removes the network of every run of this process (Ctrl-C, SIGTERM); synchronous, never throws. */
export function teardownAllNetns(): void {
  for (const base of [...live]) {
    removeNetns(base);
    live.delete(base);
  }
}

/** Directed cuts ("from cannot send to to") of a set of link settings (links.ts), as the proxies read them. */
export function directedCuts(settings: readonly LinkSetting[]): { from: number; to: number }[] {
  const out = new Map<string, { from: number; to: number }>();
  const add = (from: number, to: number): void => void out.set(`${from}>${to}`, { from, to });
  for (const s of settings) {
    // Link `from>to` carries from's requests to `to` and to's responses back.
    if (s.mode === 'drop' || s.mode === 'drop-requests') add(s.from, s.to);
    if (s.mode === 'drop' || s.mode === 'drop-responses') add(s.to, s.from);
  }
  return [...out.values()];
}

export class NetnsHosts {
  private readonly names: ReturnType<typeof netnsNames>;
  private closed = false;

  private constructor(
    readonly hostBase: number,
    readonly nodes: number,
  ) {
    this.names = netnsNames(hostBase);
  }

  /**
   * Builds the bridge and one namespace per node (1..nodes), removing first whatever a crashed run of
   * the same host block left. On a failure half way, what was built is removed before the error goes on.
   */
  static create(hostBase: number, nodes: number): NetnsHosts {
    const why = netnsUnavailable();
    if (why !== null) throw new Error(why);
    removeNetns(hostBase);
    const h = new NetnsHosts(hostBase, nodes);
    // A crash of the harness (an uncaught exception) must not leave the network behind: 'exit'
    // listeners run then too, synchronously, which teardownAllNetns is.
    if (!process.listeners('exit').includes(teardownAllNetns)) process.on('exit', teardownAllNetns);
    live.add(hostBase);
    try {
      h.build();
    } catch (err) {
      h.close();
      throw err;
    }
    return h;
  }

  private build(): void {
    const n = this.names;
    ip(['link', 'add', n.bridge, 'type', 'bridge']);
    ip(['addr', 'add', `${n.harness}/24`, 'dev', n.bridge]);
    ip(['link', 'set', n.bridge, 'up']);
    for (let id = 1; id <= this.nodes; id++) {
      const ns = n.ns(id);
      ip(['netns', 'add', ns]);
      ip(['link', 'add', n.hostVeth(id), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      ip(['link', 'set', n.hostVeth(id), 'master', n.bridge, 'up']);
      // Inside the namespace, in one `ip` process: loopback, the node's address, and the sink.
      ip(['-n', ns, '-batch', '-'], ['link set lo up', `addr add ${n.address(id)}/24 dev eth0`, 'link set eth0 up', 'link add cut0 type veth peer name cut0p', 'link set cut0 arp off up', ''].join('\n'));
    }
  }

  /** Node `id`'s address (it listens and advertises there). */
  address(id: number): string {
    return this.names.address(id);
  }

  /** The harness's address on the bridge. */
  get harnessAddress(): string {
    return this.names.harness;
  }

  namespace(id: number): string {
    return this.names.ns(id);
  }

  /** The command prefix that runs a program in node `id`'s namespace. */
  wrap(id: number): string[] {
    return ['ip', 'netns', 'exec', this.names.ns(id)];
  }

  /** Applies a partition's link settings (links.ts) as routes to the sink; links not named keep their state. */
  async apply(settings: readonly LinkSetting[]): Promise<void> {
    const byNode = new Map<number, string[]>();
    for (const c of directedCuts(settings)) byNode.set(c.from, [...(byNode.get(c.from) ?? []), `route replace ${this.names.address(c.to)}/32 dev cut0`]);
    await Promise.all([...byNode].map(([id, cmds]) => ipAsync(['-n', this.names.ns(id), '-batch', '-'], cmds.join('\n') + '\n')));
  }

  /** Every node reaches every other again (the routes to the sinks are flushed). */
  async healAll(): Promise<void> {
    await Promise.all(Array.from({ length: this.nodes }, (_, i) => ipAsync(['-n', this.names.ns(i + 1), 'route', 'flush', 'dev', 'cut0'])));
  }

  /** Packets the sinks dropped so far, over all nodes (a partition that dropped nothing did not happen). */
  async droppedPackets(): Promise<number> {
    const counts = await Promise.all(
      Array.from({ length: this.nodes }, async (_, i) => {
        const out = JSON.parse(await ipAsync(['-n', this.names.ns(i + 1), '-j', '-s', 'link', 'show', 'dev', 'cut0'])) as { stats64: { tx: { dropped: number } } }[];
        return out[0]?.stats64.tx.dropped ?? 0;
      }),
    );
    return counts.reduce((a, b) => a + b, 0);
  }

  /** Removes the namespaces, veths and bridge (idempotent, never throws); the brokers must be stopped first, or are killed. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    removeNetns(this.hostBase);
    live.delete(this.hostBase);
  }
}
