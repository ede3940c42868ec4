import './patches.js';
import type { AccessConnection, AccessSession, Authenticator, ProtocolHandler, TlsSource } from '@mailgrid/access';
import { inNetworks, isAscii, parseAddress, parseNetworks, Replies, toMailError, type Config, type Logger, type SmtpReply } from '@mailgrid/core';
import { accept, newMessageId, refuse, type Intake, type Notify, type Route, type Router, type Verdict } from '@mailgrid/mailflow';
import { Resolver } from 'node:dns';
import type { BlockList } from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerAuthenticationResponse, type SMTPServerDataStream, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { MessageCollector } from './message-check.js';
import { written } from './patches.js';
import { receivedHeader } from './received.js';

export interface SmtpDeps {
  config: Config;
  router: Router;
  intake: Intake;
  tls: TlsSource;
  auth: Authenticator;
  log: Logger;
}

/**
 * The SMTP listeners by their registry names: the MX port (AUTH only after STARTTLS, and
 * STARTTLS only with a configured certificate), submission (RFC 6409: STARTTLS, then AUTH,
 * before any mail) and submission over implicit TLS (RFC 8314).
 */
type Listener = 'smtp' | 'submission' | 'submissions';

interface SessionState {
  log: Logger;
  /** Its client may relay unauthenticated: decided once, at connect (with the PROXY header's address). */
  trusted: boolean;
  listener: Listener;
  /** A login, once that passed. */
  login: (user: string, password: string) => Promise<string>;
  /** The node drains: no new transaction. */
  draining: boolean;
  /** smtp-server closed the session (on whichever socket it had: STARTTLS replaces the plain one). */
  closed: () => void;
}

/**
 * SMTP and submission on the access layer. smtp-server speaks the protocol on the
 * connections the layer hands it; the hooks check what only SMTP can (SMTPUTF8, the client's
 * network or login, the DATA bytes) and leave routing, policy, queueing and delivery to
 * Intake, whose reply they hand back as it is. An authenticated user may relay, only as its
 * own account or one of its aliases.
 */
export class SmtpProtocol {
  private readonly log: Logger;
  private readonly sessions = new Map<string, SessionState>();
  /** What RCPT routed, kept with smtp-server's own recipient object. */
  private readonly routes = new WeakMap<SMTPServerAddress, Route>();
  private config: Config;
  private readonly trusted: BlockList;
  /** One smtp-server per listener (their options differ), made at its first connection (TLS is loaded by then); none of them listens. */
  private readonly servers: Partial<Record<Listener, SMTPServer>> = {};

  constructor(private readonly options: SmtpDeps) {
    this.config = options.config;
    this.trusted = parseNetworks(options.config.smtp.trustedNetworks);
    this.log = options.log.child({ component: 'smtp' });
  }

  /** The handler of the registry's `smtp` (the MX port) and `submission` (both its ports): the same sessions. */
  handler(): ProtocolHandler {
    return {
      open: (conn) => this.open(conn),
      // Before the greeting, SMTP names the server in place of an enhanced code (RFC 5321 §4.2).
      refusal: (err) => {
        const { code, text } = toMailError(err).reply;
        return `${code} ${this.config.smtp.hostname} ${text}`;
      },
      greetingDelayMs: () => this.config.smtp.greetingDelayMs,
      applySettings: (c) => this.applySettings(c),
    };
  }

  private createServer(listener: Listener): SMTPServer {
    const smtp = this.config.smtp;
    const tls = this.options.tls;
    // AUTH needs TLS first everywhere; on the MX port both only with a real certificate.
    const withTls = listener !== 'smtp' || tls.configured;
    const serverOptions: SMTPServerOptions & { listener: Listener } = {
      listener,
      name: smtp.hostname,
      banner: 'mailgrid ESMTP',
      size: smtp.maxMessageBytes,
      maxRecipients: smtp.maxRecipients,
      socketTimeout: smtp.idleTimeoutMs,
      disableReverseLookup: !smtp.reverseDns,
      resolver: new Resolver({ timeout: smtp.reverseDnsTimeoutMs, tries: 1 }),
      hideENHANCEDSTATUSCODES: false,
      // DSN (RFC 3461): NOTIFY, RET, ENVID and ORCPT are honoured in the reports mailgrid makes.
      hideDSN: false,
      authOptional: listener === 'smtp',
      authMethods: ['PLAIN', 'LOGIN'],
      authRequiredMessage: `${Replies.authRequired().reply.enhanced} ${Replies.authRequired().reply.text}`,
      // Implicit TLS: the layer did the handshake; the session knows it is secure.
      secure: listener === 'submissions',
      disabledCommands: withTls ? [] : ['AUTH', 'STARTTLS'],
      ...(withTls ? tls.current : {}),
      logger: this.config.log.smtpProtocol ? (this.log.child({ component: 'smtp-protocol', listener }) as any) : false,
      onAuth: (auth, session, cb) => this.onAuth(auth, session, cb),
      onMailFrom: (address, session, cb) => {
        this.checkSender(address, session).then((v) => answer(v, cb));
      },
      onRcptTo: (address, session, cb) => {
        this.checkRecipient(address, session).then((v) => answer(v, cb));
      },
      onData: (stream, session, cb) => this.onData(stream, session, cb),
      onClose: (session) => this.sessions.get(session.id)?.closed(),
    };
    const server = new SMTPServer(serverOptions);
    server.on('error', (err) => this.log.error({ event: 'smtp.error', listener, err }, 'SMTP server error'));
    if (withTls) tls.onChange((m) => server.updateSecureContext(m));
    return server;
  }

  /** Applies changed live settings (limits) to new commands and sessions at once. */
  private applySettings(config: Config): void {
    this.config = config;
    for (const server of Object.values(this.servers) as SMTPServer[]) {
      const o = server.options as SMTPServerOptions;
      o.size = config.smtp.maxMessageBytes;
      o.maxRecipients = config.smtp.maxRecipients;
      o.socketTimeout = config.smtp.idleTimeoutMs;
    }
  }

  /** A connection from the layer becomes an smtp-server session (the client's address is the layer's, from a PROXY header). */
  private open(conn: AccessConnection): AccessSession {
    const listener = conn.listener as Listener;
    const server = (this.servers[listener] ??= this.createServer(listener));
    let closed!: () => void;
    const done = new Promise<void>((resolve) => (closed = resolve));
    const state: SessionState = {
      log: conn.log,
      trusted: inNetworks(this.trusted, conn.client),
      listener,
      login: this.options.auth.forSession({ ip: conn.client, protocol: conn.protocol, session: conn.id }),
      draining: false,
      closed,
    };
    this.sessions.set(conn.id, state);
    void done.then(() => this.sessions.delete(conn.id));
    conn.log.debug({ event: 'smtp.connect', listener }, 'connection');
    server.connect(conn.socket, { id: conn.id, remoteAddress: conn.client, remotePort: conn.clientPort });
    const connection = () => [...server.connections].find((c) => (c as unknown as { id: string }).id === conn.id) as unknown as SmtpConnection | undefined;
    return {
      done,
      // A session in a transaction finishes it (its next MAIL gets 421 4.3.2); one between transactions goes now.
      drain: () => {
        state.draining = true;
        const c = connection();
        if (c && !c.session?.envelope?.mailFrom && !c._dataStream) hangUp(c);
      },
      close: () => {
        const c = connection();
        if (c) hangUp(c);
      },
    };
  }

  private sessionLog(session: SMTPServerSession): Logger {
    return this.sessions.get(session.id)?.log ?? this.log;
  }

  /** A trusted network's client, or an authenticated user: never anyone else (no open relay). */
  private mayRelay(session: SMTPServerSession): boolean {
    return !!session.user || (this.sessions.get(session.id)?.trusted ?? false);
  }

  /** AUTH PLAIN or LOGIN (smtp-server refuses it before TLS): checked by the account's group; a session is closed after `auth.maxFailures` failures (a 421). */
  private onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, cb: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void): void {
    const state = this.sessions.get(session.id);
    if (!state) return send(Replies.localError().reply, (e) => cb(e));
    state
      .login(auth.username ?? '', auth.password ?? '')
      .then((account) => {
        state.log.info({ event: 'smtp.authenticated', user: auth.username, account }, 'authenticated');
        cb(null, { user: account });
      })
      .catch((err) => send(toMailError(err).reply, (e) => cb(e)));
  }

  private async checkSender(address: SMTPServerAddress, session: SMTPServerSession): Promise<Verdict> {
    if (this.sessions.get(session.id)?.draining) return refuse(Replies.shuttingDown());
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
      via: this.sessions.get(session.id)?.listener,
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

/** What of smtp-server's connection the drain looks at (it has no public API for them). */
interface SmtpConnection {
  session?: { envelope?: { mailFrom?: unknown } };
  _dataStream?: unknown;
  send(code: number, text: string): void;
  close(): void;
}

/** Ends a session with 421 4.3.2 (the client tries again later, elsewhere). */
function hangUp(c: SmtpConnection): void {
  const { code, enhanced, text } = Replies.shuttingDown().reply;
  c.send(code, `${enhanced} ${text}`);
  c.close();
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
