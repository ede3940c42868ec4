import { ACCESS_LISTENERS, accessProtocol, defaults, type AccessListenerName } from '@mailgrid/core';

/**
 * HAProxy in front of the frontends: TCP mode, the PROXY protocol to each frontend (so it
 * sees the client's real address), health checks on each frontend's /readyz, and timeouts
 * long enough for SMTP DATA. `mailgrid cluster up` writes it with `nbthread 1` (HAProxy
 * shares the machine with the nodes); deploy/haproxy.cfg (a balancer of its own: every
 * core) and deploy/compose-haproxy.cfg (frontends found by name through Docker's DNS) are
 * the same function's output, written out; test/deploy.test.ts checks they still are.
 */
export interface HaproxyFrontend {
  id: string;
  host: string;
  ports: Record<AccessListenerName, number>;
  httpPort: number;
}

export interface HaproxyOptions {
  /** The first line's comment. */
  comment?: string;
  /** Threads; unset, HAProxy takes one per core. */
  nbthread?: number;
  /**
   * A DNS server (`127.0.0.11:53`, Docker's) to resolve the frontends' names with while
   * running: a recreated container comes back on another address, and a frontend whose
   * name does not resolve yet at start leaves its server down instead of stopping HAProxy.
   */
  dns?: string;
}

/** One HAProxy frontend and backend per access listener of the registry, each balancing over every frontend (TLS passes through: the frontends terminate it). */
export function haproxyConfig(binds: Record<AccessListenerName, string>, frontends: HaproxyFrontend[], options: HaproxyOptions = {}): string {
  const resolve = options.dns ? ' resolvers dns init-addr libc,none' : '';
  const sections = ACCESS_LISTENERS.map(({ name: service, protocol }) => {
    // Longer than the protocol lets a client think (its default idle timeout): the frontend, not HAProxy, ends an idle session.
    const idle = `${Math.ceil(idleMs(accessProtocol(protocol).idleKey) / 1000) + 10}s`;
    return `frontend ${service}
    bind ${binds[service]}
    timeout client ${idle}
    default_backend ${service}_frontends

backend ${service}_frontends
    timeout server ${idle}
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2 send-proxy${resolve}
${frontends.map((f) => `    server ${f.id} ${f.host}:${f.ports[service]} check port ${f.httpPort}`).join('\n')}
`;
  });
  const threads = options.nbthread ? `    nbthread ${options.nbthread}\n` : '';
  const dns = options.dns
    ? `resolvers dns
    nameserver dns1 ${options.dns}
    # how long an answer is kept; a frontend recreated on another address is found again within this
    hold valid 10s

`
    : '';
  return `${options.comment ? `# ${options.comment}\n` : ''}global
    # each connection takes two descriptors; stay inside the usual 20,000 limit
    maxconn 8000
${threads}
${dns}defaults
    mode tcp
    timeout connect 5s
    # each access listener waits a little longer than its protocol's idle timeout (below)
    timeout client 610s
    timeout server 610s
    timeout check 2s
    # a connection refused by a dead frontend is retried on another one
    retries 3
    option redispatch

${sections.join('\n')}`;
}

/** A setting's default (`imap.idleTimeoutMs`), in ms. */
function idleMs(key: string): number {
  return key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], defaults()) as number;
}
