import './smtp-patches.js';
import { inNetworks, isAscii, metrics, parseAddress, parseNetworks, Replies, toMailError, type Config, type Logger, type Service, type ServiceState, type SmtpReply } from '@mailgrid/core';
import { accept, newMessageId, refuse, type Intake, type Notify, type Route, type Verdict } from '@mailgrid/mailflow';
import { Resolver } from 'node:dns';
import type { BlockList } from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerAuthenticationResponse, type SMTPServerDataStream, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import type { AccessDeps } from './access.js';
import { MessageCollector } from './message-check.js';
import { acceptProxyFrom, written } from './smtp-patches.js';
import { receivedHeader } from './received.js';

export interface SmtpFrontendOptions extends AccessDeps {
  intake: Intake;
}

/**
 * One SMTP listener: the MX port (AUTH only after STARTTLS, and STARTTLS only with a
 * configured certificate), submission (RFC 6409: STARTTLS, then AUTH, before any mail) or
 * submission over implicit TLS (RFC 8314).
 */
type ListenerKind = 'mx' | 'submission' | 'submissions';
interface Listener {
  kind: ListenerKind;
  server: SMTPServer;
}

/**
 * The SMTP listeners. smtp-server speaks the protocol; the hooks check what only SMTP can
 * (SMTPUTF8, the client's network or login, the DATA bytes) and leave routing, policy,
 * queueing and delivery to Intake, whose reply they hand back as it is. An authenticated
 * user may relay, only as its own account or one of its aliases.
 */
export class SmtpFrontend implements Service {
  readonly name = 'smtp';
  private _state: ServiceState = 'new';
  private listeners: Listener[] = [];
  private readonly log: Logger;
  /** Per session: its logger, whether its client may relay unauthenticated (decided once, at connect), its failed logins. */
  private readonly sessions = new Map<string, { log: Logger; trusted: boolean; failures: number; kind: ListenerKind }>();
  /** What RCPT routed, kept with smtp-server's own recipient object. */
  private readonly routes = new WeakMap<SMTPServerAddress, Route>();
  private config: Config;
  private readonly trusted: BlockList;

  constructor(private readonly options: SmtpFrontendOptions) {
    this.config = options.config;
    this.trusted = parseNetworks(options.config.smtp.trustedNetworks);
    this.log = options.log.child({ component: 'smtp' });
  }

  private createServer(kind: Listener['kind']): SMTPServer {
    const smtp = this.config.smtp;
    const tls = this.options.tls;
    // AUTH needs TLS first everywhere; on the MX port both only with a real certificate.
    const withTls = kind !== 'mx' || tls.configured;
    const serverOptions: SMTPServerOptions & { greetingDelay: number; listener: ListenerKind } = {
      listener: kind,
      name: smtp.hostname,
      banner: 'mailgrid ESMTP',
      size: smtp.maxMessageBytes,
      maxRecipients: smtp.maxRecipients,
      socketTimeout: smtp.idleTimeoutMs,
      maxClients: smtp.maxClients,
      greetingDelay: smtp.greetingDelayMs,
      disableReverseLookup: !smtp.reverseDns,
      resolver: new Resolver({ timeout: smtp.reverseDnsTimeoutMs, tries: 1 }),
      hideENHANCEDSTATUSCODES: false,
      // DSN (RFC 3461): NOTIFY, RET, ENVID and ORCPT are honoured in the reports mailgrid makes.
      hideDSN: false,
      authOptional: kind === 'mx',
      authMethods: ['PLAIN', 'LOGIN'],
      authRequiredMessage: `${Replies.authRequired().reply.enhanced} ${Replies.authRequired().reply.text}`,
      secure: kind === 'submissions',
      disabledCommands: withTls ? [] : ['AUTH', 'STARTTLS'],
      ...(withTls ? tls.current : {}),
      logger: this.config.log.smtpProtocol ? (this.log.child({ component: 'smtp-protocol', listener: kind }) as any) : false,
      onConnect: (session, cb) => this.onConnect(kind, session, cb),
      onAuth: (auth, session, cb) => this.onAuth(auth, session, cb),
      onClose: (session) => {
        if (this.sessions.delete(session.id)) metrics.smtpSessionsActive.dec({ listener: kind });
      },
      onMailFrom: (address, session, cb) => {
        this.checkSender(address, session).then((v) => answer(v, cb));
      },
      onRcptTo: (address, session, cb) => {
        this.checkRecipient(address, session).then((v) => answer(v, cb));
      },
      onData: (stream, session, cb) => this.onData(stream, session, cb),
    };
    const server = new SMTPServer(serverOptions);
    if (smtp.proxyProtocol) acceptProxyFrom(server, parseNetworks(smtp.proxyFrom));
    server.on('error', (err) => this.log.error({ event: 'smtp.error', listener: kind, err }, 'SMTP server error'));
    if (withTls) tls.onChange((m) => server.updateSecureContext(m));
    return server;
  }

  get state(): ServiceState {
    return this._state;
  }

  /** Applies changed live settings (limits) to new commands and sessions at once. */
  applySettings(config: Config): void {
    this.config = config;
    for (const { server } of this.listeners) {
      const o = server.options as SMTPServerOptions & { greetingDelay: number };
      o.size = config.smtp.maxMessageBytes;
      o.maxRecipients = config.smtp.maxRecipients;
      o.maxClients = config.smtp.maxClients;
      o.socketTimeout = config.smtp.idleTimeoutMs;
      o.greetingDelay = config.smtp.greetingDelayMs;
    }
  }

  async start(): Promise<void> {
    this._state = 'starting';
    const host = this.config.smtp.host;
    const ports = { mx: this.config.smtp.port, submission: this.config.submission.port, submissions: this.config.submission.tlsPort };
    // A port of 0 is off (the MX port is always on).
    for (const kind of ['mx', 'submission', 'submissions'] as const) {
      if (kind !== 'mx' && !ports[kind]) continue;
      const server = this.createServer(kind);
      await new Promise<void>((resolve, reject) => {
        server.server.once('error', reject);
        server.listen(ports[kind], host, () => {
          server.server.off('error', reject);
          resolve();
        });
      });
      const bound = (server.server.address() as { port: number }).port;
      this.listeners.push({ kind, server });
      this.log.info({ event: 'smtp.listening', listener: kind, host, port: bound }, 'SMTP listening');
    }
    this._state = 'running';
  }

  /**
   * Drains: stops listening at once, lets open sessions finish their transaction (a new
   * MAIL gets 421 4.3.2 so the client goes elsewhere) until `drainMs`, then closes what is
   * left with 421. smtp-server's own close() would refuse every command at once.
   */
  async stop(drainMs = 30_000): Promise<void> {
    if (this._state === 'new' || this._state === 'stopped') return;
    this._state = 'stopping';
    const servers = this.listeners.map((l) => l.server);
    // close() only stops listening here: its callback would wait for every connection, past drainMs.
    for (const s of servers) s.server.close();
    const open = () => servers.reduce((n, s) => n + s.connections.size, 0);
    const deadline = Date.now() + drainMs;
    while (open() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (open() > 0) {
      this.log.warn({ event: 'smtp.drain-timeout', sessions: open() }, 'closing sessions still open');
      for (const s of servers) (s.options as { closeTimeout?: number }).closeTimeout = 1;
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    }
    this._state = 'stopped';
    this.log.info({ event: 'smtp.stopped' }, 'stopped');
  }

  private sessionLog(session: SMTPServerSession): Logger {
    return this.sessions.get(session.id)?.log ?? this.log;
  }

  /** A trusted network's client, or an authenticated user: never anyone else (no open relay). */
  private mayRelay(session: SMTPServerSession): boolean {
    return !!session.user || (this.sessions.get(session.id)?.trusted ?? false);
  }

  private onConnect(kind: ListenerKind, session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    const log = this.log.child({ session: session.id });
    this.sessions.set(session.id, { log, trusted: this.trustedClient(session.remoteAddress), failures: 0, kind });
    metrics.smtpSessions.inc({ listener: kind });
    metrics.smtpSessionsActive.inc({ listener: kind });
    log.debug({ event: 'smtp.connect', client: session.remoteAddress, hostname: session.clientHostname }, 'connection');
    cb();
  }

  /** AUTH PLAIN or LOGIN (smtp-server refuses it before TLS): checked by the account's group; a session is closed after `auth.maxFailures` failures. */
  private onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, cb: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void): void {
    const state = this.sessions.get(session.id);
    this.options.auth
      .login(auth.username ?? '', auth.password ?? '', { ip: session.remoteAddress, protocol: 'smtp', session: session.id })
      .then((account) => {
        state?.log.info({ event: 'smtp.authenticated', user: auth.username, account }, 'authenticated');
        cb(null, { user: account });
      })
      .catch((err) => {
        const error = toMailError(err);
        const failures = state ? ++state.failures : 1;
        const reply = error.code !== 'AUTH_UNAVAILABLE' && failures >= this.config.auth.maxFailures ? { code: 421, enhanced: '4.7.0', text: 'Too many failed authentications, closing connection' } : error.reply;
        send(reply, (e) => cb(e));
      });
  }

  private async checkSender(address: SMTPServerAddress, session: SMTPServerSession): Promise<Verdict> {
    if (this._state === 'stopping') return refuse(Replies.shuttingDown());
    const unknown = notOffered(address, MAIL_PARAMETERS);
    if (unknown) return refuse(Replies.parameterNotOffered(unknown));
    if (address.address && !isAscii(written(address)) && !session.envelope.smtpUtf8) return refuse(Replies.utf8Required(address.address));
    if (address.address && !parseAddress(address.address)) return refuse(Replies.badAddress(address.address));
    if (session.user) {
      // A user sends as its account or one of the account's aliases, nothing else.
      const route = await this.options.router.route(address.address);
      if (route.kind === 'tempfail') return refuse(route.reason);
      if (route.kind !== 'local' || route.account !== session.user) return refuse(Replies.senderNotOwned(address.address, String(session.user)));
    }
    // Backpressure: a full queue (or disk) refuses new mail rather than growing without bound.
    const full = await this.options.intake.room();
    if (full) {
      this.sessionLog(session).warn({ event: 'smtp.queue-full' }, 'queue full, refusing mail');
      return refuse(full);
    }
    return accept(undefined);
  }

  private async checkRecipient(address: SMTPServerAddress, session: SMTPServerSession): Promise<Verdict> {
    const rcpt = address.address;
    const unknown = notOffered(address, RCPT_PARAMETERS);
    if (unknown) return refuse(Replies.parameterNotOffered(unknown));
    if (!isAscii(written(address)) && !session.envelope.smtpUtf8) return refuse(Replies.utf8Required(rcpt));
    // Only trusted networks (and, later, authenticated users) may relay: never an open relay.
    const verdict = await this.options.intake.recipient(rcpt, { mayRelay: this.mayRelay(session) });
    if (verdict.kind !== 'accept') {
      if (verdict.kind === 'tempfail') this.sessionLog(session).warn({ event: 'smtp.rcpt-tempfail', rcpt, err: verdict.error }, 'recipient deferred');
      return verdict;
    }
    this.routes.set(address, verdict.value);
    return accept(undefined);
  }

  private trustedClient(ip: string): boolean {
    return inNetworks(this.trusted, ip);
  }

  private onData(stream: SMTPServerDataStream, session: SMTPServerSession, cb: (err?: Error | null, message?: string) => void): void {
    const collector = new MessageCollector(this.config.smtp.maxMessageBytes);
    stream.on('data', (chunk: Buffer) => collector.add(chunk));
    stream.once('end', () => {
      this.accept(collector, stream, session).then(
        (reply) => send(reply, cb),
        (err) => send(Replies.storageFailed(err).reply, cb),
      );
    });
  }

  private async accept(collector: MessageCollector, stream: SMTPServerDataStream, session: SMTPServerSession): Promise<SmtpReply> {
    const log = this.sessionLog(session);
    const smtp = this.config.smtp;
    if (stream.sizeExceeded) return Replies.messageTooBig(smtp.maxMessageBytes).reply;
    if (collector.badAt >= 0) {
      log.info({ event: 'smtp.bad-line-endings', offset: collector.badAt }, 'message refused: bare CR/LF or NUL');
      return Replies.badLineEndings().reply;
    }
    const id = newMessageId();
    const receivedAt = Date.now();
    const accepted = session.envelope.rcptTo.filter((a) => this.routes.has(a));
    const recipients = accepted.map((a) => this.routes.get(a)!);
    const header = receivedHeader({
      helo: session.hostNameAppearsAs || 'unknown',
      clientHostname: session.clientHostname,
      clientAddress: session.remoteAddress,
      byHost: smtp.hostname,
      // RFC 3848's names: S for TLS, A for an authenticated client.
      protocol: `ESMTP${session.secure ? 'S' : ''}${session.user ? 'A' : ''}`,
      id,
      forRecipient: recipients.length === 1 ? recipients[0].address : undefined,
      date: new Date(receivedAt),
    });
    const result = await this.options.intake.accept({
      id,
      mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
      recipients,
      body: Buffer.concat([Buffer.from(header, 'latin1'), ...collector.chunks]),
      receivedAt,
      session: session.id,
      mayRelay: this.mayRelay(session),
      log,
      via: this.sessions.get(session.id)?.kind,
      envid: session.envelope.dsn?.envid ?? undefined,
      ret: (session.envelope.dsn?.ret as 'FULL' | 'HDRS' | null | undefined) ?? undefined,
      dsn: accepted.map((a) => (a.dsn ? { notify: a.dsn.notify as Notify[] | undefined, orcpt: a.dsn.orcpt } : undefined)),
      eightBit: collector.eightBit || (session.envelope as { bodyType?: string }).bodyType === '8bitmime',
    });
    return result.reply;
  }
}

/** What EHLO offers on MAIL and RCPT (SIZE, 8BITMIME, SMTPUTF8, DSN); anything else is refused. */
const MAIL_PARAMETERS = ['SIZE', 'BODY', 'SMTPUTF8', 'RET', 'ENVID'];
const RCPT_PARAMETERS = ['NOTIFY', 'ORCPT'];

/** The first parameter of a command that was not offered, if any. */
function notOffered(address: SMTPServerAddress, offered: string[]): string | undefined {
  return Object.keys((address as { args?: Record<string, unknown> }).args || {}).find((k) => !offered.includes(k.toUpperCase()));
}

/** Settles an smtp-server hook from a verdict (MAIL, RCPT: smtp-server words its own 250). */
function answer(verdict: Verdict, callback: (err?: Error | null) => void): void {
  if (verdict.kind === 'accept') callback(null);
  else send(verdict.error.reply, callback);
}

/** Hands a reply to smtp-server as it is: basic code, then our enhanced code and text (see smtp-patches). */
function send(reply: SmtpReply, callback: (err?: Error | null, message?: string) => void): void {
  const text = `${reply.enhanced} ${reply.text}`;
  if (reply.code < 400) callback(null, text);
  else callback(Object.assign(new Error(text), { responseCode: reply.code }));
}
