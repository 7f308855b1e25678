/** "host:port" parsing shared by the server and the CLI ("[::1]:7070" for IPv6). */
export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(address: string, what = 'address'): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(address.trim());
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || port > 65535) throw new Error(`invalid ${what} "${address}": expected HOST:PORT, e.g. 127.0.0.1:7070`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
