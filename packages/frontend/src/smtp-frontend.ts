import './smtp-patches.js';
import { inNetworks, isAscii, parseAddress, parseNetworks, Replies, type Config, type Logger, type Service, type ServiceState, type SmtpReply } from '@mailgrid/core';
import { accept, newMessageId, refuse, type Intake, type Notify, type Route, type Verdict } from '@mailgrid/mailflow';
import { Resolver } from 'node:dns';
import { readFileSync } from 'node:fs';
import type { BlockList } from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { MessageCollector } from './message-check.js';
import { acceptProxyFrom, written } from './smtp-patches.js';
import { receivedHeader } from './received.js';

export interface SmtpFrontendOptions {
  config: Config;
  log: Logger;
  intake: Intake;
}

/**
 * The SMTP listener. smtp-server speaks the protocol; the hooks check what only SMTP can
 * (SMTPUTF8, the client's network, the DATA bytes) and leave routing, policy, queueing and
 * delivery to Intake, whose reply they hand back as it is.
 */
export class SmtpFrontend implements Service {
  readonly name = 'smtp';
  private _state: ServiceState = 'new';
  private readonly server: SMTPServer;
  private readonly log: Logger;
  /** Per session: its logger, and whether its client may relay (trust is decided once, at connect). */
  private readonly sessions = new Map<string, { log: Logger; mayRelay: boolean }>();
  /** What RCPT routed, kept with smtp-server's own recipient object. */
  private readonly routes = new WeakMap<SMTPServerAddress, Route>();
  private boundPort = 0;
  private config: Config;
  private readonly trusted: BlockList;

  constructor(private readonly options: SmtpFrontendOptions) {
    this.config = options.config;
    this.trusted = parseNetworks(options.config.smtp.trustedNetworks);
    const smtp = options.config.smtp;
    this.log = options.log.child({ component: 'smtp' });
    const serverOptions: SMTPServerOptions & { greetingDelay: number } = {
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
      authOptional: true,
      // AUTH arrives with submission; STARTTLS only with a configured certificate.
      disabledCommands: smtp.tlsKeyFile ? ['AUTH'] : ['AUTH', 'STARTTLS'],
      ...(smtp.tlsKeyFile ? { key: readFileSync(smtp.tlsKeyFile), cert: readFileSync(smtp.tlsCertFile) } : {}),
      logger: options.config.log.smtpProtocol ? (this.log.child({ component: 'smtp-protocol' }) as any) : false,
      onConnect: (session, cb) => this.onConnect(session, cb),
      onClose: (session) => this.sessions.delete(session.id),
      onMailFrom: (address, session, cb) => {
        this.checkSender(address, session).then((v) => answer(v, cb));
      },
      onRcptTo: (address, session, cb) => {
        this.checkRecipient(address, session).then((v) => answer(v, cb));
      },
      onData: (stream, session, cb) => this.onData(stream, session, cb),
    };
    this.server = new SMTPServer(serverOptions);
    if (smtp.proxyProtocol) acceptProxyFrom(this.server, parseNetworks(smtp.proxyFrom));
    this.server.on('error', (err) => this.log.error({ event: 'smtp.error', err }, 'SMTP server error'));
  }

  get state(): ServiceState {
    return this._state;
  }

  /** Applies changed live settings (limits) to new commands and sessions at once. */
  applySettings(config: Config): void {
    this.config = config;
    const o = this.server.options as SMTPServerOptions & { greetingDelay: number };
    o.size = config.smtp.maxMessageBytes;
    o.maxRecipients = config.smtp.maxRecipients;
    o.maxClients = config.smtp.maxClients;
    o.socketTimeout = config.smtp.idleTimeoutMs;
    o.greetingDelay = config.smtp.greetingDelayMs;
  }

  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<void> {
    this._state = 'starting';
    const { host, port } = this.config.smtp;
    await new Promise<void>((resolve, reject) => {
      this.server.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.server.off('error', reject);
        resolve();
      });
    });
    this.boundPort = (this.server.server.address() as { port: number }).port;
    this._state = 'running';
    this.log.info({ event: 'smtp.listening', host, port: this.boundPort }, 'SMTP listening');
  }

  /**
   * Drains: stops listening at once, lets open sessions finish their transaction (a new
   * MAIL gets 421 4.3.2 so the client goes elsewhere) until `drainMs`, then closes what is
   * left with 421. smtp-server's own close() would refuse every command at once.
   */
  async stop(drainMs = 30_000): Promise<void> {
    if (this._state === 'new' || this._state === 'stopped') return;
    this._state = 'stopping';
    await new Promise<void>((resolve) => this.server.server.close(() => resolve()).once('error', () => resolve()));
    const deadline = Date.now() + drainMs;
    while (this.server.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (this.server.connections.size > 0) {
      this.log.warn({ event: 'smtp.drain-timeout', sessions: this.server.connections.size }, 'closing sessions still open');
      (this.server.options as { closeTimeout?: number }).closeTimeout = 1;
      await new Promise<void>((resolve) => this.server.close(() => resolve()));
    }
    this._state = 'stopped';
    this.log.info({ event: 'smtp.stopped' }, 'stopped');
  }

  private sessionLog(session: SMTPServerSession): Logger {
    return this.sessions.get(session.id)?.log ?? this.log;
  }

  private mayRelay(session: SMTPServerSession): boolean {
    return this.sessions.get(session.id)?.mayRelay ?? false;
  }

  private onConnect(session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    const log = this.log.child({ session: session.id });
    this.sessions.set(session.id, { log, mayRelay: this.trustedClient(session.remoteAddress) });
    log.debug({ event: 'smtp.connect', client: session.remoteAddress, hostname: session.clientHostname }, 'connection');
    cb();
  }

  private async checkSender(address: SMTPServerAddress, session: SMTPServerSession): Promise<Verdict> {
    if (this._state === 'stopping') return refuse(Replies.shuttingDown());
    const unknown = notOffered(address, MAIL_PARAMETERS);
    if (unknown) return refuse(Replies.parameterNotOffered(unknown));
    if (address.address && !isAscii(written(address)) && !session.envelope.smtpUtf8) return refuse(Replies.utf8Required(address.address));
    if (address.address && !parseAddress(address.address)) return refuse(Replies.badAddress(address.address));
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
      protocol: session.secure ? 'ESMTPS' : 'ESMTP',
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
