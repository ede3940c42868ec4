import { Replies, toCodedError, type Config, type CodedError } from '@mailgrid/core';
import { LineSession, type AccessConnection, type Authenticator, type MailboxAccess, type MailboxSession, type ProtocolHandler, type TlsSource } from '@mailgrid/access';
import { Pop3, pop3Error } from './replies.js';

export interface Pop3Deps {
  config: () => Config;
  tls: TlsSource;
  auth: Authenticator;
  mailboxes: MailboxAccess;
}

/** POP3 on the access layer: a session per connection. */
export function pop3Protocol(deps: Pop3Deps): ProtocolHandler {
  return {
    open: (conn) => new Pop3Session(conn, deps).run(),
    refusal: pop3Error,
  };
}

interface Drop {
  uid: number;
  size: number;
  deleted: boolean;
}

/**
 * One POP3 session (RFC 1939, with CAPA, RESP-CODES and AUTH-RESP-CODE of RFC 2449, SASL
 * PLAIN of RFC 5034, STLS of RFC 2595), from the greeting to QUIT or a dropped connection.
 * A login is checked by the account's group, never in the clear: USER, PASS and AUTH wait
 * for TLS. The session holds the mailbox at the group's primary for as long as it lasts (a
 * second session gets `[IN-USE]`), works on the maildrop as it was at login, and removes
 * what DELE marked only at QUIT. If the group fails over, the hold ends and so does the
 * session; the next one is served by the new primary with the same UIDLs (UIDVALIDITY and
 * uid, which replicate).
 */
class Pop3Session extends LineSession {
  private user: string | undefined;
  private readonly login: (user: string, password: string) => Promise<string>;
  /** SASL PLAIN waiting for its response line. */
  private saslPending = false;
  private mailbox: MailboxSession | undefined;
  private drop: Drop[] = [];
  private uidValidity = 0;
  private stats = { retrieved: 0, deleted: 0 };

  constructor(
    conn: AccessConnection,
    private readonly deps: Pop3Deps,
  ) {
    super(conn, { tls: deps.tls, idleTimeoutMs: () => deps.config().pop3.idleTimeoutMs });
    this.login = deps.auth.forSession({ ip: conn.client, protocol: 'pop3', session: conn.id });
  }

  protected greet(): void {
    this.send(`+OK ${this.deps.config().smtp.hostname} mailgrid POP3 ready`);
  }

  protected reply(error: CodedError): string {
    return pop3Error(error);
  }

  protected override ended(): void {
    void this.mailbox?.close();
    if (this.user !== undefined || this.mailbox) this.log.info({ event: 'pop3.session', user: this.user, account: this.mailbox?.account, ...this.stats }, 'session ended');
  }

  protected async command(raw: Buffer): Promise<void> {
    // Names and passwords are UTF-8.
    const text = raw.toString('utf8');
    if (this.saslPending) return this.saslResponse(text);
    const [word, ...args] = text.trim().split(/\s+/);
    const verb = word.toUpperCase();
    if (verb === 'CAPA') return this.capa();
    if (verb === 'QUIT') return this.quit();
    if (!this.mailbox) {
      switch (verb) {
        case 'STLS':
          return this.stls();
        case 'USER':
        case 'PASS':
        case 'AUTH':
          if (!this.secure) return this.send(pop3Error(Replies.tlsRequired()));
          if (verb === 'USER') {
            this.user = text.slice(5).trim();
            return this.send('+OK');
          }
          if (verb === 'PASS') {
            if (this.user === undefined) return this.send(Pop3.userFirst);
            return this.open(this.user, text.slice(5));
          }
          return this.auth(args);
        default:
          return this.send(Pop3.notBeforeLogin);
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
        const show = (m: Drop, i: number) => `${i + 1} ${verb === 'LIST' ? m.size : `${this.uidValidity}.${m.uid}`}`;
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
        if (!m) return n === undefined ? this.send(Pop3.messageNumberRequired) : undefined;
        const lines = verb === 'TOP' ? Number(args[1]) : undefined;
        if (verb === 'TOP' && !(Number.isInteger(lines) && lines! >= 0)) return this.send(Pop3.lineCountRequired);
        const body = await this.mailbox.fetch(m.uid);
        if (verb === 'RETR') this.stats.retrieved++;
        this.write(Buffer.concat([Buffer.from(`+OK ${m.size} octets\r\n`), dotStuff(lines === undefined ? body : top(body, lines)), Buffer.from('.\r\n')]));
        return;
      }
      case 'DELE': {
        const m = n === undefined ? undefined : this.message(n);
        if (!m) return n === undefined ? this.send(Pop3.messageNumberRequired) : undefined;
        m.deleted = true;
        return this.send('+OK Marked to be deleted');
      }
      case 'RSET':
        for (const m of this.drop) m.deleted = false;
        return this.send('+OK');
      case 'NOOP':
        return this.send('+OK');
      default:
        return this.send(Pop3.unknownCommand);
    }
  }

  /** Message `n` of the maildrop, if it is there and not marked (else the -ERR is sent). */
  private message(n: number): Drop | undefined {
    const m = Number.isInteger(n) ? this.drop[n - 1] : undefined;
    if (!m || m.deleted) this.send(m ? Pop3.messageDeleted : Pop3.noSuchMessage);
    return m && !m.deleted ? m : undefined;
  }

  private capa(): void {
    const login = this.secure ? ['USER', 'SASL PLAIN'] : ['STLS'];
    this.send(['+OK Capability list follows', 'TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', ...login, 'IMPLEMENTATION mailgrid', '.'].join('\r\n'));
  }

  private stls(): void {
    if (this.secure) return this.send(Pop3.tlsActive);
    this.send('+OK Begin TLS negotiation now');
    this.startTls();
  }

  private async auth(args: string[]): Promise<void> {
    if ((args[0] ?? '').toUpperCase() !== 'PLAIN') return this.send(Pop3.mechanism);
    if (args[1] === undefined) {
      this.saslPending = true;
      return this.send('+ ');
    }
    return this.plain(args[1]);
  }

  private async saslResponse(line: string): Promise<void> {
    this.saslPending = false;
    if (line.trim() === '*') return this.send(Pop3.authCancelled);
    return this.plain(line.trim());
  }

  private async plain(b64: string): Promise<void> {
    const [authzid, authcid, password] = Buffer.from(b64 === '=' ? '' : b64, 'base64').toString('utf8').split('\0');
    if (password === undefined || (authzid && authzid !== authcid)) return this.send(Pop3.malformedAuth);
    this.user = authcid;
    return this.open(authcid, password);
  }

  /** The login, then the maildrop: held at the group's primary and listed once. */
  private async open(user: string, password: string): Promise<void> {
    let account: string;
    try {
      account = await this.login(user, password);
    } catch (err) {
      const e = toCodedError(err);
      return e.code === 'TOO_MANY_AUTH_FAILURES' ? this.hangUp(pop3Error(e)) : this.send(pop3Error(e));
    }
    let mailbox: MailboxSession;
    try {
      mailbox = await this.deps.mailboxes.open(account, { mode: 'exclusive', session: this.id, log: this.log });
    } catch (err) {
      return this.send(pop3Error(toCodedError(err)));
    }
    // A session that ended while the hold was granted lets go of it at once.
    if (this.isClosed) return void mailbox.close();
    let listed;
    try {
      listed = await mailbox.list();
    } catch (err) {
      void mailbox.close();
      throw err;
    }
    if (this.isClosed) return void mailbox.close();
    this.mailbox = mailbox;
    this.uidValidity = listed.uidValidity;
    this.drop = listed.messages.map((m) => ({ uid: m.uid, size: Number(m.size), deleted: false }));
    // The primary changed or stopped: this session cannot go on (the next one goes to the new primary).
    void mailbox.lost.then(() => this.hangUp(pop3Error(Replies.mailboxChanged())));
    this.send(`+OK Logged in, ${this.drop.length} messages`);
  }

  /** QUIT: in the transaction state, the marked messages are removed first (RFC 1939's UPDATE state). */
  private async quit(): Promise<void> {
    const marked = this.drop.filter((m) => m.deleted).map((m) => m.uid);
    if (this.mailbox && marked.length) {
      try {
        this.stats.deleted = await this.mailbox.delete(marked);
      } catch (err) {
        return this.hangUp(Pop3.notRemoved(toCodedError(err)));
      }
    }
    // Let go before the answer: a client that logs in again at once finds the mailbox free.
    await this.mailbox?.close();
    this.hangUp(this.mailbox ? `+OK Logging out, ${this.stats.deleted} messages deleted` : '+OK Logging out');
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
