import type { BlockList } from 'node:net';
import { parseNetworks } from './address.js';
import type { Config } from './config.js';

/**
 * The mail-access protocols a frontend serves, one entry each: the registry the config,
 * the access layer, the launcher's topology, the HAProxy config, metrics, /readyz and the
 * tests all read. Adding a protocol is one entry here (with its config section, named
 * after it) plus its session class in the frontend.
 *
 * A protocol listens on a plain port, where STARTTLS (STLS) upgrades the session, and may
 * have a second one with implicit TLS (RFC 8314), named after it with an `s` (`pop3s`).
 * Those names are the listeners' everywhere: HAProxy sections, topology ports, metric labels.
 */
export type TlsMode = 'starttls' | 'implicit';

export interface AccessListenerSpec {
  /** The listener's name (`pop3`, `pop3s`). */
  readonly name: string;
  /** Its port's key in the protocol's config section; a port of 0 is off, unless `alwaysOn`. */
  readonly portKey: 'port' | 'tlsPort';
  readonly tls: TlsMode;
  /** The port clients know it by, where a balancer listens for it. */
  readonly wellKnown: number;
  /** Never off: port 0 means a port of the system's choosing (the MX port). */
  readonly alwaysOn?: boolean;
}

export interface AccessProtocolSpec {
  /** The protocol's name, which is also its config section's. */
  readonly name: string;
  /** The setting of how long a client may say nothing (a balancer in front must wait longer). */
  readonly idleKey: string;
  /** Its section has `host`, `proxyFrom` and `maxClients` of its own (empty, 0: the `listen` ones). */
  readonly overrides: boolean;
  readonly listeners: readonly AccessListenerSpec[];
}

export const ACCESS_PROTOCOLS = [
  // The MX port. Its section keeps no overrides: smtp.host, smtp.proxyFrom and smtp.maxClients
  // were the shared settings before `listen` and still name them (deprecated).
  { name: 'smtp', idleKey: 'smtp.idleTimeoutMs', overrides: false, listeners: [{ name: 'smtp', portKey: 'port', tls: 'starttls', wellKnown: 25, alwaysOn: true }] },
  // RFC 6409 submission (STARTTLS, AUTH, then mail) and over implicit TLS.
  {
    name: 'submission',
    idleKey: 'smtp.idleTimeoutMs',
    overrides: true,
    listeners: [
      { name: 'submission', portKey: 'port', tls: 'starttls', wellKnown: 587 },
      { name: 'submissions', portKey: 'tlsPort', tls: 'implicit', wellKnown: 465 },
    ],
  },
  {
    name: 'pop3',
    idleKey: 'pop3.idleTimeoutMs',
    overrides: true,
    listeners: [
      { name: 'pop3', portKey: 'port', tls: 'starttls', wellKnown: 110 },
      { name: 'pop3s', portKey: 'tlsPort', tls: 'implicit', wellKnown: 995 },
    ],
  },
  {
    name: 'imap',
    idleKey: 'imap.idleTimeoutMs',
    overrides: true,
    listeners: [
      { name: 'imap', portKey: 'port', tls: 'starttls', wellKnown: 143 },
      { name: 'imaps', portKey: 'tlsPort', tls: 'implicit', wellKnown: 993 },
    ],
  },
] as const satisfies readonly AccessProtocolSpec[];

export type AccessProtocolName = (typeof ACCESS_PROTOCOLS)[number]['name'];
export type AccessListenerName = (typeof ACCESS_PROTOCOLS)[number]['listeners'][number]['name'];

export interface AccessListenerEntry extends AccessListenerSpec {
  readonly name: AccessListenerName;
  readonly protocol: AccessProtocolName;
}

/** Every listener of every protocol, in registry order. */
export const ACCESS_LISTENERS: readonly AccessListenerEntry[] = ACCESS_PROTOCOLS.flatMap((p) =>
  p.listeners.map((l: AccessListenerSpec) => ({ ...l, protocol: p.name }) as AccessListenerEntry),
);

export function accessProtocol(name: AccessProtocolName): AccessProtocolSpec {
  return ACCESS_PROTOCOLS.find((p) => p.name === name)!;
}

/** What one protocol listens with: its section's own settings over the shared `listen` ones. */
export interface AccessSettings {
  protocol: AccessProtocolName;
  host: string;
  /** Whether PROXY headers are expected, and from which balancers (addresses, CIDR blocks). */
  proxyProtocol: boolean;
  proxyFrom: string;
  maxClients: number;
  /** Other processes on this host may listen on the same ports (`listen.reusePort`). */
  reusePort: boolean;
  /** The listeners that are on, with their configured port (0: the system's choice). */
  listeners: { name: AccessListenerName; port: number; tls: TlsMode; wellKnown: number }[];
}

type Section = { port: number; tlsPort?: number; host?: string; proxyFrom?: string; maxClients?: number };

export function accessSettings(config: Config, protocol: AccessProtocolName): AccessSettings {
  const spec = accessProtocol(protocol);
  const section = (config as unknown as Record<string, Section>)[protocol];
  return {
    protocol,
    host: section.host || config.listen.host,
    proxyProtocol: config.listen.proxyProtocol,
    proxyFrom: section.proxyFrom || config.listen.proxyFrom,
    maxClients: section.maxClients || config.listen.maxClients,
    reusePort: config.listen.reusePort,
    listeners: spec.listeners
      .map((l) => ({ name: l.name as AccessListenerName, port: section[l.portKey] ?? 0, tls: l.tls, wellKnown: l.wellKnown, on: l.alwaysOn || Boolean(section[l.portKey]) }))
      .filter((l) => l.on)
      .map(({ on: _, ...l }) => l),
  };
}

/** The balancers a protocol takes PROXY headers from; undefined when it expects none. */
export function proxyPeers(settings: AccessSettings): BlockList | undefined {
  return settings.proxyProtocol ? parseNetworks(settings.proxyFrom) : undefined;
}
