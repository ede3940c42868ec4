import { inNetworks, metrics, parseNetworks, toMailError, type Config, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import type { MailboxCalls, MailboxHold } from '@mailgrid/protocol';
import { randomBytes } from 'node:crypto';
import { createServer, type BlockList, type Server, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { AccessDeps } from './access.js';

export type Pop3Options = AccessDeps;

/**
 * POP3 (RFC 1939, with CAPA, RESP-CODES and AUTH-RESP-CODE of RFC 2449, SASL PLAIN of RFC
 * 5034, STLS of RFC 2595) on `pop3.port`, and over implicit TLS on `pop3s.port`. A login is
 * checked by the account's group (see Authenticator), never in the clear: USER, PASS and AUTH
 * wait for TLS. The session is served from the group's primary through the Mailbox service:
 * it holds the mailbox there for as long as it lasts (a second session gets -ERR [IN-USE]),
 * works on the maildrop as it was at login, and removes what DELE marked only at QUIT. If the
 * group fails over, the hold ends and so does the session; the next one is served by the new
 * primary with the same UIDLs (UIDVALIDITY and uid, which replicate).
 */
export class Pop3Frontend implements Service {
  readonly name = 'pop3';
  private _state: ServiceState = 'new';
  private readonly servers: Server[] = [];
  private readonly sessions = new Set<Pop3Session>();
  /** Every connection, sessions and those still waiting for their PROXY header alike (destroyed at the end of a drain). */
  private readonly sockets = new Set<Socket>();
  private readonly log: Logger;
  private readonly balancers: BlockList | undefined;
  private config: Config;

  constructor(private readonly options: Pop3Options) {
    this.config = options.config;
    this.log = options.log.child({ component: 'pop3' });
    this.balancers = options.config.smtp.proxyProtocol ? parseNetworks(options.config.smtp.proxyFrom) : undefined;
  }

  get state(): ServiceState {
    return this._state;
  }

  applySettings(config: Config): void {
    this.config = config;
  }

  async start(): Promise<void> {
    this._state = 'starting';
    const host = this.config.smtp.host;
    for (const [kind, port] of [['pop3', this.config.pop3.port], ['pop3s', this.config.pop3s.port]] as const) {
      if (!port) continue;
      const server = createServer((socket) => this.accept(socket, kind === 'pop3s'));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const bound = (server.address() as { port: number }).port;
      this.servers.push(server);
      this.log.info({ event: 'pop3.listening', listener: kind, host, port: bound }, 'POP3 listening');
    }
    this._state = 'running';
  }

  /**
   * Stops listening and ends every session between two commands (a command under way is
   * answered first), until `drainMs`; then closes the rest. A session ended so removes
   * nothing it marked: no QUIT came.
   */
  async stop(drainMs = 30_000): Promise<void> {
    if (this._state === 'new' || this._state === 'stopped') return;
    this._state = 'stopping';
    // close() only stops listening here: its callback would wait for every connection.
    for (const server of this.servers) server.close();
    for (const s of this.sessions) s.drain();
    const deadline = Date.now() + drainMs;
    while (this.sessions.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const s of this.sessions) s.close(SHUTTING_DOWN);
    for (const socket of this.sockets) socket.destroy();
    this._state = 'stopped';
    this.log.info({ event: 'pop3.stopped' }, 'stopped');
  }

  private accept(socket: Socket, implicitTls: boolean): void {
    socket.on('error', () => undefined); // a reset by the client ends the session (see close)
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    if (this.sockets.size > this.config.smtp.maxClients) {
      socket.end('-ERR [SYS/TEMP] Too many connections, try again later\r\n');
      return;
    }
    const begin = (client: string) => {
      const session = new Pop3Session(socket, client, implicitTls, this.options, () => this.config, this.log);
      this.sessions.add(session);
      metrics.pop3Sessions.inc();
      metrics.pop3SessionsActive.inc();
      session.done.then(() => {
        this.sessions.delete(session);
        metrics.pop3SessionsActive.dec();
      });
    };
    const peer = socket.remoteAddress ?? '';
    if (!this.balancers || !inNetworks(this.balancers, peer)) return begin(peer);
    socket.setTimeout(PROXY_HEADER_MS, () => socket.destroy());
    readProxyHeader(socket).then((client) => {
      socket.setTimeout(0);
      begin(client);
    }, () => socket.destroy());
  }
}

/**
 * The PROXY protocol v1 header a balancer sends first (HAProxy's send-proxy): the client's
 * real address. Anything else from a balancer ends the connection.
 */
function readProxyHeader(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n');
      if (end < 0) return buf.length > 107 ? fail() : undefined;
      socket.off('data', onData);
      socket.pause();
      const m = /^PROXY (TCP4|TCP6|UNKNOWN)(?: (\S+) \S+ \d+ \d+)?$/.exec(buf.subarray(0, end).toString('latin1'));
      if (!m) return fail();
      const rest = buf.subarray(end + 2);
      if (rest.length) socket.unshift(rest);
      resolve(m[2] ?? socket.remoteAddress ?? '');
    };
    const fail = () => {
      socket.off('data', onData);
      reject(new Error('bad PROXY header'));
    };
    socket.on('data', onData);
  });
}

const HANDSHAKE_MS = 30_000;
const PROXY_HEADER_MS = 10_000;
/** Input a session may have waiting (a command line is short; a pipelining client waits for answers). */
const MAX_PENDING_INPUT = 64 * 1024;
const SHUTTING_DOWN = '-ERR [SYS/TEMP] Server shutting down, try again later';

interface Drop {
  uid: number;
  size: number;
  deleted: boolean;
}

/** One POP3 connection, from the greeting to QUIT or a dropped connection. */
class Pop3Session {
  readonly done: Promise<void>;
  private finish!: () => void;
  private socket: Socket;
  private secure: boolean;
  private buffer = '';
  private busy = false;
  private closed = false;
  private ended = false;
  private draining = false;
  private readonly id = randomBytes(6).toString('hex');
  private readonly log: Logger;
  private user: string | undefined;
  private account: string | undefined;
  private failures = 0;
  /** SASL PLAIN waiting for its response line. */
  private saslPending = false;
  private mailbox: MailboxCalls | undefined;
  private hold: MailboxHold | undefined;
  private drop: Drop[] = [];
  private uidValidity = 0;
  private idle: NodeJS.Timeout | undefined;
  private stats = { retrieved: 0, deleted: 0 };

  constructor(
    socket: Socket,
    private readonly client: string,
    implicitTls: boolean,
    private readonly options: Pop3Options,
    private readonly config: () => Config,
    log: Logger,
  ) {
    this.done = new Promise((r) => (this.finish = r));
    this.log = log.child({ session: this.id, client });
    this.secure = implicitTls;
    this.socket = implicitTls ? this.upgrade(socket) : socket;
    if (!implicitTls) this.listen(socket);
    socket.once('close', () => this.end());
    this.log.debug({ event: 'pop3.connect' }, 'connection');
    this.send(`+OK ${this.config().smtp.hostname} mailgrid POP3 ready`);
  }

  private upgrade(plain: Socket): TLSSocket {
    const secure = new TLSSocket(plain, { isServer: true, secureContext: this.options.tls.context, minVersion: 'TLSv1.2' });
    secure.on('error', (err) => {
      this.log.debug({ event: 'pop3.tls-error', err: err.message }, 'TLS error');
      plain.destroy();
    });
    // A client that goes (or never starts the handshake) is not kept half-open until the idle timeout.
    plain.once('end', () => plain.destroy());
    const handshake = setTimeout(() => plain.destroy(), HANDSHAKE_MS);
    handshake.unref();
    secure.once('secure', () => clearTimeout(handshake));
    secure.once('close', () => clearTimeout(handshake));
    this.listen(secure);
    return secure;
  }

  private listen(socket: Socket): void {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      if (this.buffer.length > MAX_PENDING_INPUT) return this.close('-ERR Too much input without reading the answers');
      this.next();
    });
    socket.resume();
    this.touch();
  }

  private touch(): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => this.close('-ERR [SYS/TEMP] Idle for too long, closing connection'), this.config().pop3.idleTimeoutMs);
    this.idle.unref();
  }

  /** Takes the next whole line, one command at a time (a pipelining client waits its turn). */
  private next(): void {
    if (this.busy || this.closed) return;
    const nl = this.buffer.indexOf('\n');
    if (nl < 0) return;
    const line = this.buffer.slice(0, nl).replace(/\r$/, '');
    this.buffer = this.buffer.slice(nl + 1);
    this.busy = true;
    this.touch();
    // Nothing more is read while a command runs (and its answer is written out): a client cannot pile up input or output.
    this.socket.pause();
    this.command(line)
      .catch((err) => {
        this.log.warn({ event: 'pop3.error', err: (err as Error).message }, 'command failed');
        this.send('-ERR [SYS/TEMP] ' + toMailError(err).reply.text);
      })
      .then(() => this.flushed())
      .finally(() => {
        this.busy = false;
        if (this.draining) return this.close(SHUTTING_DOWN);
        this.socket.resume();
        this.next();
      });
  }

  /** Resolves once what was written has gone out (or the connection is gone). */
  private flushed(): Promise<void> {
    if (this.closed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
  }

  /** Ends the session now if it is between commands, else once the command under way is answered. */
  drain(): void {
    this.draining = true;
    if (!this.busy) this.close(SHUTTING_DOWN);
  }

  private send(line: string): void {
    if (!this.closed) this.socket.write(line + '\r\n');
  }

  /** Ends the connection after `last` (nothing DELE marked is removed). */
  close(last?: string): void {
    if (this.closed) return;
    if (last) this.send(last);
    this.closed = true;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1_000).unref();
    this.end();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.idle);
    this.closed = true;
    void this.hold?.release();
    this.hold = undefined;
    if (this.user !== undefined || this.account) this.log.info({ event: 'pop3.session', user: this.user, account: this.account, ...this.stats }, 'session ended');
    this.finish();
  }

  private async command(line: string): Promise<void> {
    if (this.saslPending) return this.saslResponse(line);
    // The line was read byte for byte (latin1); names and passwords are UTF-8.
    const text = Buffer.from(line, 'latin1').toString('utf8');
    const [word, ...args] = text.trim().split(/\s+/);
    const verb = word.toUpperCase();
    if (verb === 'CAPA') return this.capa();
    if (verb === 'QUIT') return this.quit();
    if (!this.account) {
      switch (verb) {
        case 'STLS':
          return this.stls();
        case 'USER':
        case 'PASS':
        case 'AUTH':
          if (!this.secure) return this.send('-ERR [AUTH] Plaintext authentication disallowed on non-secure connections: STLS first');
          if (verb === 'USER') {
            this.user = text.slice(5).trim();
            return this.send('+OK');
          }
          if (verb === 'PASS') {
            if (this.user === undefined) return this.send('-ERR USER first');
            return this.login(this.user, text.slice(5));
          }
          return this.auth(args);
        default:
          return this.send('-ERR Unknown command or not allowed before login');
      }
    }
    const n = args[0] === undefined ? undefined : Number(args[0]);
    switch (verb) {
      case 'STAT': {
        const live = this.drop.filter((m) => !m.deleted);
        return this.send(`+OK ${live.length} ${live.reduce((t, m) => t + m.size, 0)}`);
      }
      case 'LIST':
      case 'UIDL': {
        const show = (m: Drop, i: number) => `${i + 1} ${verb === 'LIST' ? m.size : this.uidl(m)}`;
        if (n !== undefined) {
          const m = this.message(n);
          return m && this.send(`+OK ${show(m, n - 1)}`);
        }
        const lines = this.drop.flatMap((m, i) => (m.deleted ? [] : [show(m, i)]));
        return this.send(['+OK', ...lines, '.'].join('\r\n'));
      }
      case 'RETR':
      case 'TOP': {
        const m = n === undefined ? undefined : this.message(n);
        if (!m) return n === undefined ? this.send('-ERR Message number required') : undefined;
        const lines = verb === 'TOP' ? Number(args[1]) : undefined;
        if (verb === 'TOP' && !(Number.isInteger(lines) && lines! >= 0)) return this.send('-ERR Line count required');
        const body = await this.mailbox!.fetch(this.account, m.uid);
        if (verb === 'RETR') this.stats.retrieved++;
        this.socket.write(Buffer.concat([Buffer.from(`+OK ${m.size} octets\r\n`), dotStuff(lines === undefined ? body : top(body, lines)), Buffer.from('.\r\n')]));
        return;
      }
      case 'DELE': {
        const m = n === undefined ? undefined : this.message(n);
        if (!m) return n === undefined ? this.send('-ERR Message number required') : undefined;
        m.deleted = true;
        return this.send(`+OK Marked to be deleted`);
      }
      case 'RSET':
        for (const m of this.drop) m.deleted = false;
        return this.send(`+OK`);
      case 'NOOP':
        return this.send('+OK');
      default:
        return this.send('-ERR Unknown command');
    }
  }

  private uidl(m: Drop): string {
    return `${this.uidValidity}.${m.uid}`;
  }

  /** Message `n` of the maildrop, if it is there and not marked (else the -ERR is sent). */
  private message(n: number): Drop | undefined {
    const m = Number.isInteger(n) ? this.drop[n - 1] : undefined;
    if (!m || m.deleted) this.send(m ? '-ERR Message is deleted' : '-ERR No such message');
    return m && !m.deleted ? m : undefined;
  }

  private capa(): void {
    const login = this.secure ? ['USER', 'SASL PLAIN'] : ['STLS'];
    this.send(['+OK Capability list follows', 'TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', ...login, 'IMPLEMENTATION mailgrid', '.'].join('\r\n'));
  }

  private stls(): void {
    if (this.secure) return this.send('-ERR TLS already active');
    this.send('+OK Begin TLS negotiation now');
    // What the client sent after STLS is dropped: nothing plain may ride into the secure session.
    this.buffer = '';
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.pause();
    this.secure = true;
    this.socket = this.upgrade(plain);
  }

  private async auth(args: string[]): Promise<void> {
    if ((args[0] ?? '').toUpperCase() !== 'PLAIN') return this.send('-ERR [AUTH] Unsupported mechanism (PLAIN only)');
    if (args[1] === undefined) {
      this.saslPending = true;
      return this.send('+ ');
    }
    return this.plain(args[1]);
  }

  private async saslResponse(line: string): Promise<void> {
    this.saslPending = false;
    if (line.trim() === '*') return this.send('-ERR [AUTH] Authentication cancelled');
    return this.plain(line.trim());
  }

  private async plain(b64: string): Promise<void> {
    const [authzid, authcid, password] = Buffer.from(b64 === '=' ? '' : b64, 'base64').toString('utf8').split('\0');
    if (password === undefined || (authzid && authzid !== authcid)) return this.send('-ERR [AUTH] Malformed authentication');
    this.user = authcid;
    return this.login(authcid, password);
  }

  private async login(user: string, password: string): Promise<void> {
    let account: string;
    try {
      account = await this.options.auth.login(user, password, { ip: this.client, protocol: 'pop3', session: this.id });
    } catch (err) {
      const e = toMailError(err);
      if (e.code === 'AUTH_FAILED' || e.code === 'AUTH_LOCKED') {
        if (++this.failures >= this.config().auth.maxFailures) return this.close('-ERR [AUTH] Too many failed authentications, closing connection');
        return this.send(e.code === 'AUTH_FAILED' ? '-ERR [AUTH] Authentication failed' : `-ERR [SYS/TEMP] ${e.reply.text}`);
      }
      return this.send(`-ERR [SYS/TEMP] ${e.reply.text}`);
    }
    const route = await this.options.router.route(account);
    if (route.kind !== 'local') return this.send('-ERR [SYS/TEMP] Mailbox server unavailable, try again later');
    try {
      const mailbox = await this.options.auth.mailbox(route.group, { session: this.id });
      const hold = await mailbox.hold(account, `${this.config().nodeId}/${this.id}`);
      // Kept at once, so a session that ends from here on lets go of it (see end).
      this.hold = hold;
      if (this.closed) return void hold.release();
      let listed;
      try {
        listed = await mailbox.list(account);
      } catch (err) {
        this.hold = undefined;
        void hold.release();
        throw err;
      }
      if (this.closed) return;
      this.mailbox = mailbox;
      this.account = account;
      this.uidValidity = listed.uidValidity;
      this.drop = listed.messages.map((m) => ({ uid: m.uid, size: Number(m.size), deleted: false }));
      // The primary changed or stopped: this session cannot go on (the next one goes to the new primary).
      hold.lost.then(() => {
        this.hold = undefined;
        this.log.info({ event: 'pop3.hold-lost', account }, 'mailbox server changed; ending the session');
        if (this.busy) this.close();
        else this.close('-ERR [SYS/TEMP] Mailbox server changed, please reconnect');
      });
      this.send(`+OK Logged in, ${this.drop.length} messages`);
    } catch (err) {
      const e = toMailError(err);
      this.send(e.code === 'MAILBOX_IN_USE' ? '-ERR [IN-USE] Mailbox is in use by another session' : `-ERR [SYS/TEMP] ${e.reply.text}`);
    }
  }

  /** QUIT: in the transaction state, the marked messages are removed first (RFC 1939's UPDATE state). */
  private async quit(): Promise<void> {
    const marked = this.drop.filter((m) => m.deleted).map((m) => m.uid);
    if (this.account && marked.length) {
      try {
        this.stats.deleted = await this.mailbox!.delete(this.account, marked);
      } catch (err) {
        return this.close(`-ERR [SYS/TEMP] Marked messages were not removed: ${toMailError(err).reply.text}`);
      }
    }
    // Let go before the answer: a client that logs in again at once finds the mailbox free.
    await this.hold?.release();
    this.close(this.account ? `+OK Logging out, ${this.stats.deleted} messages deleted` : '+OK Logging out');
  }
}

/** RFC 1939 byte-stuffing: a line that starts with "." gets another; the message ends with CRLF. */
export function dotStuff(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  if (body[0] === 0x2e) parts.push(Buffer.from('.'));
  for (let at = body.indexOf('\r\n.'); at >= 0; at = body.indexOf('\r\n.', at + 3)) {
    parts.push(body.subarray(from, at + 2), Buffer.from('.'));
    from = at + 2;
  }
  parts.push(body.subarray(from));
  if (body.length && !(body[body.length - 2] === 0x0d && body[body.length - 1] === 0x0a)) parts.push(Buffer.from('\r\n'));
  return Buffer.concat(parts);
}

/** TOP: the header, the blank line, and the first `lines` lines of the body. */
export function top(body: Buffer, lines: number): Buffer {
  const split = body.indexOf('\r\n\r\n');
  if (split < 0) return body;
  let end = split + 4;
  for (let i = 0; i < lines && end < body.length; i++) {
    const nl = body.indexOf('\r\n', end);
    end = nl < 0 ? body.length : nl + 2;
  }
  return body.subarray(0, end);
}
