import './smtp-patches.js';
import { MailError, Replies, isAscii, parseAddress, type Config, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import type { Directory, Resolution } from '@mailgrid/directory';
import type { RecipientResult__Output } from '@mailgrid/protocol';
import type { DsnRecipient, MailQueue } from '@mailgrid/queue';
import { Resolver } from 'node:dns';
import { BlockList, isIPv6 } from 'node:net';
import { readFileSync } from 'node:fs';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import type { GroupDelivery } from './group-delivery.js';
import { MessageCollector } from './message-check.js';
import { newMessageId, receivedHeader } from './received.js';
import { accept, answer, refuse, withTimeout, type Verdict } from './verdict.js';

export interface SmtpFrontendOptions {
  config: Config;
  log: Logger;
  directory: Directory;
  delivery: GroupDelivery;
  queue: MailQueue;
}

/** What RCPT decided for a recipient: an account of some group, or mail to relay out. */
type Routed = { route: 'local'; address: string; account: string; group: string } | { route: 'relay'; address: string };

/** Directory lookups slower than this fail soft with 451 4.4.3. */
const LOOKUP_TIMEOUT_MS = 5_000;

/**
 * The SMTP listener of a frontend. smtp-server speaks the protocol; the hooks here only
 * decide (verdicts) and hand accepted mail to the owning backends over the delivery channel.
 */
export class SmtpFrontend implements Service {
  readonly name = 'smtp';
  private _state: ServiceState = 'new';
  private readonly server: SMTPServer;
  private readonly log: Logger;
  private readonly sessions = new Map<string, Logger>();
  /** What RCPT resolved, kept with smtp-server's own recipient object. */
  private readonly routes = new WeakMap<SMTPServerAddress, Routed>();
  private boundPort = 0;
  private config: Config;
  private readonly trusted: BlockList;

  constructor(private readonly options: SmtpFrontendOptions) {
    this.config = options.config;
    this.trusted = trustedNetworks(options.config.smtp.trustedNetworks);
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
      useProxy: smtp.proxyProtocol,
      hideENHANCEDSTATUSCODES: false,
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
    return this.sessions.get(session.id) ?? this.log;
  }

  private onConnect(session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    const log = this.log.child({ session: session.id });
    this.sessions.set(session.id, log);
    log.debug({ event: 'smtp.connect', client: session.remoteAddress, hostname: session.clientHostname }, 'connection');
    cb();
  }

  private async checkSender(address: SMTPServerAddress, session: SMTPServerSession): Promise<Verdict> {
    if (this._state === 'stopping') return refuse(Replies.shuttingDown());
    if (address.address && !isAscii(address.address) && !session.envelope.smtpUtf8)
      return refuse(Replies.utf8Required(address.address));
    if (address.address && !parseAddress(address.address)) return refuse(Replies.badAddress(address.address));
    // Backpressure: a full queue (or disk) refuses new mail rather than growing without bound.
    const full = await this.options.queue.refusal();
    if (full) {
      this.sessionLog(session).warn({ event: 'smtp.queue-full' }, 'queue full, refusing mail');
      return refuse(full);
    }
    return accept(undefined);
  }

  private async checkRecipient(address: SMTPServerAddress, session: SMTPServerSession): Promise<Verdict> {
    const rcpt = address.address;
    if (!isAscii(rcpt) && !session.envelope.smtpUtf8) return refuse(Replies.utf8Required(rcpt));
    const parsed = parseAddress(rcpt);
    if (!parsed) return refuse(Replies.badAddress(rcpt));
    let res: Resolution;
    try {
      res = await withTimeout(this.options.directory.resolve(parsed), LOOKUP_TIMEOUT_MS, () => Replies.lookupFailed(rcpt));
    } catch (err) {
      this.sessionLog(session).warn({ event: 'smtp.lookup-failed', rcpt, err }, 'directory lookup failed');
      return refuse(Replies.lookupFailed(rcpt, err));
    }
    let route: Routed;
    switch (res.kind) {
      case 'account':
        route = { route: 'local', address: rcpt, account: res.account, group: res.group };
        break;
      case 'unknown-user':
        return refuse(Replies.unknownUser(rcpt));
      case 'foreign':
        // Only trusted networks (and, later, authenticated users) may relay: never an open relay.
        if (!this.isTrusted(session.remoteAddress)) return refuse(Replies.relayDenied(rcpt));
        route = { route: 'relay', address: rcpt };
    }
    // The queue may have filled since MAIL, and an accepted recipient may have to be queued.
    const full = await this.options.queue.refusal();
    if (full) return refuse(full);
    this.routes.set(address, route);
    return accept(undefined);
  }

  private isTrusted(ip: string): boolean {
    const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1];
    return v4 ? this.trusted.check(v4, 'ipv4') : this.trusted.check(ip, isIPv6(ip) ? 'ipv6' : 'ipv4');
  }

  private onData(stream: SMTPServerDataStream, session: SMTPServerSession, cb: (err?: Error | null, message?: string) => void): void {
    const collector = new MessageCollector(this.config.smtp.maxMessageBytes);
    stream.pipe(collector);
    collector.on('finish', () => {
      this.deliver(collector, stream, session).then(
        ({ verdict, message }) => answer(verdict, cb, message),
        (err) => answer(refuse(Replies.storageFailed(err)), cb),
      );
    });
  }

  private async deliver(
    collector: MessageCollector,
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
  ): Promise<{ verdict: Verdict; message?: string }> {
    const log = this.sessionLog(session);
    const smtp = this.config.smtp;
    if (stream.sizeExceeded) return { verdict: refuse(Replies.messageTooBig(smtp.maxMessageBytes)) };
    if (collector.badAt >= 0) {
      log.info({ event: 'smtp.bad-line-endings', offset: collector.badAt }, 'message refused: bare CR/LF or NUL');
      return { verdict: refuse(Replies.badLineEndings()) };
    }

    const messageId = newMessageId();
    const receivedAt = Date.now();
    const recipients = session.envelope.rcptTo.map((a) => this.routes.get(a)!).filter(Boolean);
    const header = receivedHeader({
      helo: session.hostNameAppearsAs || 'unknown',
      clientHostname: session.clientHostname,
      clientAddress: session.remoteAddress,
      byHost: smtp.hostname,
      protocol: session.secure ? 'ESMTPS' : 'ESMTP',
      id: messageId,
      forRecipient: recipients.length === 1 ? recipients[0].address : undefined,
      date: new Date(receivedAt),
    });
    const body = Buffer.concat([Buffer.from(header, 'latin1'), ...collector.chunks]);
    const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';

    const trace = { session: session.id, message: messageId };
    const local = recipients.flatMap((r) => (r.route === 'local' ? [r] : []));
    const inline = this.config.delivery.inline ? local : [];
    const results = inline.length ? await this.options.delivery.deliverAll(inline, { messageId, mailFrom, body, receivedAt }, trace) : [];
    const byAddress = new Map(local.map((r) => [r.address, r]));

    // Whatever was not stored and may still be delivered goes into the durable queue.
    const toQueue = [
      ...results
        .filter((r) => r.outcome !== 'STORED' && r.outcome !== 'PERMANENT_FAILURE')
        .map((r) => ({ address: r.address, route: 'local' as const, account: byAddress.get(r.address)?.account, lastError: r.reply ?? undefined })),
      ...(inline.length ? [] : local.map((r) => ({ address: r.address, route: 'local' as const, account: r.account }))),
      ...recipients.filter((r) => r.route === 'relay').map((r) => ({ address: r.address, route: 'relay' as const })),
    ];
    const failed = results.filter((r) => r.outcome === 'PERMANENT_FAILURE');
    const stored = results.filter((r) => r.outcome === 'STORED').length;
    log.info(
      {
        event: 'smtp.delivered',
        messageId,
        client: session.remoteAddress,
        from: mailFrom,
        size: body.length,
        rcpts: results.map((r) => `${r.address}=${r.outcome === 'STORED' ? 'STORED' : `${r.reply?.code} ${r.reply?.enhanced}`}`).join(' '),
        queued: toQueue.length,
      },
      'message handled',
    );
    if (!stored && !toQueue.length) return { verdict: refuse(fromReply(failed[0])) };
    if (toQueue.length) {
      try {
        await this.options.queue.enqueue({ id: messageId, mailFrom, body, receivedAt, origin: this.config.nodeId, session: session.id, recipients: toQueue });
      } catch (err) {
        log.error({ event: 'smtp.enqueue-failed', messageId, err }, 'could not queue the message');
        return { verdict: refuse(Replies.storageFailed(err)) };
      }
    }
    if (failed.length) {
      // Accepted for the others, so the failures are reported by a DSN, not by the reply.
      const dsn: DsnRecipient[] = failed.map((r) => ({ address: r.address, action: 'failed', reply: r.reply!, lastAttemptAt: Date.now() }));
      await this.options.queue
        .notify({ id: messageId, mailFrom, receivedAt }, body, dsn)
        .catch((err) => log.error({ event: 'smtp.dsn-failed', messageId, err }, 'could not queue the DSN'));
    }
    const how = toQueue.length ? (stored ? 'stored and queued' : 'queued') : 'stored';
    return { verdict: accept(undefined), message: `2.0.0 Ok: ${how} as ${messageId}` };
  }
}

/** `10.0.0.0/8, 127.0.0.1` → a BlockList of the networks allowed to relay. */
function trustedNetworks(spec: string): BlockList {
  const list = new BlockList();
  for (const item of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [net, bits] = item.split('/');
    const type = isIPv6(net) ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(net, type);
    else list.addSubnet(net, Number(bits), type);
  }
  return list;
}

function fromReply(r: RecipientResult__Output): MailError {
  const reply = r.reply ?? { code: 550, enhanced: '5.0.0', text: 'Delivery failed' };
  return new MailError('DELIVERY_FAILED', { code: reply.code, enhanced: reply.enhanced, text: `<${r.address}>: ${reply.text}` });
}
