import {
  ACCESS_PROTOCOLS,
  accessSettings,
  inNetworks,
  metrics,
  proxyPeers,
  Replies,
  type AccessListenerName,
  type AccessProtocolName,
  type AccessSettings,
  type Config,
  type Logger,
  type MailError,
  type Service,
  type ServiceState,
} from '@mailgrid/core';
import { randomBytes } from 'node:crypto';
import { createServer, type BlockList, type Server, type Socket } from 'node:net';
import type { AccessConnection, AccessSession, ProtocolHandler } from './connection.js';
import { readProxyHeader } from './proxy-header.js';
import { serverTls, type TlsSource } from './tls-source.js';

/** How long a balancer may take to send its PROXY header. */
const PROXY_HEADER_MS = 10_000;

/** One protocol's listeners and what the layer keeps of its connections. */
interface Served {
  protocol: AccessProtocolName;
  handler: ProtocolHandler;
  settings: AccessSettings;
  peers: BlockList | undefined;
  log: Logger;
  servers: { name: AccessListenerName; server: Server; address: string }[];
  /** Connections counted against `maxClients`: sessions, and those still on their way to one. */
  open: number;
  /** Each session with its id and listener, for the log of a drain that ran out of time. */
  sessions: Map<AccessSession, { id: string; listener: AccessListenerName }>;
}

/**
 * The one listener layer under every mail-access protocol (the registry in core says which
 * there are). For each protocol with a handler it binds the plain and implicit-TLS ports,
 * takes a PROXY header from the protocol's balancers (`proxyFrom`) and from nobody else,
 * refuses a connection past `maxClients` with the protocol's own words, does the implicit
 * TLS handshake and the greeting pause, and hands the connection to the protocol's handler.
 * Stop drains every protocol at once under one deadline: listening stops, each session ends
 * where its protocol allows, and what is left at the deadline is closed.
 */
export class AccessListener implements Service {
  readonly name = 'access';
  private _state: ServiceState = 'new';
  private readonly served: Served[];
  /** Every accepted socket, so none outlives the drain. */
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly options: {
      config: Config;
      tls: TlsSource;
      log: Logger;
      /** The protocols this node serves, by their registry name. */
      handlers: Partial<Record<AccessProtocolName, ProtocolHandler>>;
    },
  ) {
    this.served = ACCESS_PROTOCOLS.flatMap((p) => {
      const handler = options.handlers[p.name];
      if (!handler) return [];
      const settings = accessSettings(options.config, p.name);
      return [{ protocol: p.name, handler, settings, peers: proxyPeers(settings), log: options.log.child({ component: p.name }), servers: [], open: 0, sessions: new Map() }];
    });
  }

  get state(): ServiceState {
    return this._state;
  }

  /** Where each listener listens (`host:port`, the real port when configured as 0). */
  bound(): Partial<Record<AccessListenerName, string>> {
    return Object.fromEntries(this.served.flatMap((p) => p.servers.map((s) => [s.name, s.address])));
  }

  /** Live settings: the caps at once; each protocol takes the rest. */
  applySettings(config: Config): void {
    for (const p of this.served) {
      p.settings = { ...p.settings, maxClients: accessSettings(config, p.protocol).maxClients };
      p.handler.applySettings?.(config);
    }
  }

  async start(): Promise<void> {
    this._state = 'starting';
    try {
      await this.listen();
    } catch (err) {
      // A port that cannot be had ends the start: the ports taken before it are let go, or they would keep the process alive.
      for (const p of this.served) for (const { server } of p.servers.splice(0)) server.close();
      this._state = 'stopped';
      throw err;
    }
    this._state = 'running';
  }

  private async listen(): Promise<void> {
    for (const p of this.served) {
      for (const l of p.settings.listeners) {
        const server = createServer({ pauseOnConnect: true }, (socket) => this.accept(p, l.name, l.tls === 'implicit', socket));
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ port: l.port, host: p.settings.host, reusePort: p.settings.reusePort }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        server.on('error', (err) => p.log.error({ event: 'access.error', listener: l.name, err }, 'listener error'));
        const port = (server.address() as { port: number }).port;
        p.servers.push({ name: l.name, server, address: `${p.settings.host}:${port}` });
        // Known label values start at 0, so a rate over them exists before the first session.
        metrics.sessions.inc({ protocol: p.protocol, listener: l.name }, 0);
        metrics.sessionsActive.inc({ protocol: p.protocol, listener: l.name }, 0);
        p.log.info({ event: `${p.protocol}.listening`, listener: l.name, host: p.settings.host, port, tls: l.tls }, `${l.name} listening`);
      }
    }
  }

  /**
   * Stops listening; every session is asked to end where its protocol allows; those left at
   * the deadline are closed, and then every socket.
   */
  async stop(drainMs = 30_000): Promise<void> {
    if (this._state === 'new' || this._state === 'stopped') return;
    this._state = 'stopping';
    const deadline = Date.now() + drainMs;
    // close() only stops listening here: its callback would wait for every connection.
    for (const p of this.served) for (const s of p.servers) s.server.close();
    const sessions = () => this.served.flatMap((p) => [...p.sessions.keys()]);
    for (const s of sessions()) s.drain();
    await settle(sessions(), deadline);
    const left = sessions();
    if (left.length) {
      const which = this.served.flatMap((p) => [...p.sessions.values()].map((s) => `${s.listener}/${s.id}`));
      this.options.log.warn({ event: 'access.drain-timeout', sessions: which }, 'closing sessions still open');
      for (const s of left) s.close();
      await settle(left, Date.now() + 1_000);
    }
    for (const socket of this.sockets) socket.destroy();
    this._state = 'stopped';
    this.options.log.info({ event: 'access.stopped' }, 'stopped');
  }

  private accept(p: Served, listener: AccessListenerName, implicitTls: boolean, socket: Socket): void {
    socket.on('error', () => undefined); // a reset by the client ends the connection (see close)
    // Answers go out when written: with Nagle, a multi-line answer waits on the client's delayed ACK (40 ms).
    socket.setNoDelay(true);
    this.sockets.add(socket);
    if (this._state !== 'running' || p.open >= p.settings.maxClients) {
      socket.once('close', () => this.sockets.delete(socket));
      return this.refuse(p, socket, this._state !== 'running' ? Replies.shuttingDown() : Replies.tooManyConnections());
    }
    // Counted until its session ends, or the socket closes before there is one. Not by the
    // socket's own 'close' alone: a protocol that upgrades it (smtp-server's STARTTLS) may
    // take its listeners off, and the count and the set would keep it for ever.
    p.open++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      p.open--;
      this.sockets.delete(socket);
    };
    socket.once('close', release);
    void this.prepare(p, listener, implicitTls, socket, release).catch((err: Error) => {
      p.log.debug({ event: 'access.dropped', listener, peer: socket.remoteAddress, err: err.message }, 'connection dropped before its session');
      socket.destroy();
      release();
    });
  }

  /** PROXY header, TLS handshake, greeting pause: then the protocol's session. */
  private async prepare(p: Served, listener: AccessListenerName, implicitTls: boolean, plain: Socket, release: () => void): Promise<void> {
    let client = { address: plain.remoteAddress ?? '', port: plain.remotePort ?? 0 };
    // Only a balancer's connection starts with a PROXY header (and must): anyone else's
    // "PROXY ..." is a command like any other, so nobody can claim a trusted address.
    if (p.peers && inNetworks(p.peers, client.address)) {
      plain.setTimeout(PROXY_HEADER_MS, () => plain.destroy());
      client = await readProxyHeader(plain);
      plain.setTimeout(0);
    }
    const id = randomBytes(6).toString('hex');
    const log = p.log.child({ session: id, client: client.address });
    let socket = plain;
    if (implicitTls) {
      socket = serverTls(plain, this.options.tls.context, (err) => log.debug({ event: 'access.tls-error', err: err.message }, 'TLS handshake failed'));
      await new Promise<void>((resolve, reject) => {
        socket.once('secure', resolve);
        plain.once('close', () => reject(new Error('closed during the TLS handshake')));
      });
    }
    const pause = p.handler.greetingDelayMs?.() ?? 0;
    if (pause > 0 && (await talksWithin(socket, pause))) {
      log.info({ event: 'access.early-talker', listener }, 'client talked before the greeting');
      return this.refuse(p, socket, Replies.earlyTalker());
    }
    if (this._state !== 'running') return this.refuse(p, socket, Replies.shuttingDown());
    const conn: AccessConnection = { id, protocol: p.protocol, listener, socket, secure: implicitTls, client: client.address, clientPort: client.port, log };
    plain.off('close', release);
    const session = p.handler.open(conn);
    p.sessions.set(session, { id, listener });
    metrics.sessions.inc({ protocol: p.protocol, listener });
    metrics.sessionsActive.inc({ protocol: p.protocol, listener });
    void session.done.then(() => {
      p.sessions.delete(session);
      metrics.sessionsActive.dec({ protocol: p.protocol, listener });
      release();
    });
  }

  /** One line in the protocol's words, then the connection ends. */
  private refuse(p: Served, socket: Socket, error: MailError): void {
    socket.end(`${p.handler.refusal(error)}\r\n`);
    setTimeout(() => socket.destroy(), 1_000).unref();
  }
}

/** Whether the client sends anything within `ms` (what it sent stays unread; the socket is left paused). */
function talksWithin(socket: Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const talked = () => finish(true);
    const timer = setTimeout(() => finish(false), ms);
    const finish = (early: boolean) => {
      clearTimeout(timer);
      socket.off('readable', talked);
      socket.pause();
      resolve(early);
    };
    socket.once('readable', talked);
  });
}

/** Resolves once every session has ended, or at the deadline. */
async function settle(sessions: AccessSession[], deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(sessions.map((s) => s.done)), new Promise((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))))]);
  clearTimeout(timer);
}
