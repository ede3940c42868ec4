import { metrics, Replies, toCodedError, type CodedError, type Config } from '@mailgrid/core';
import { LineSession, type AccessConnection, type Authenticator, type ChangeListener, type MailboxAccess, type MailboxSession, type ProtocolHandler, type TlsSource } from '@mailgrid/access';
import { sequenceSet, ImapParseError, readCommand, type Command, type TaggedCommand } from '@mailgrid/imap';
import { capabilities, ENABLEABLE } from './capabilities.js';
import { imapBye, imapRefusal } from './replies.js';
import type { Selected } from './selected.js';
import { MessageMetas } from './view.js';
import { mailboxCommands } from './mailboxes.js';
import { messageCommands } from './messages.js';
import { selectCommands } from './select.js';

export interface ImapDeps {
  config: () => Config;
  tls: TlsSource;
  auth: Authenticator;
  mailboxes: MailboxAccess;
}

/** IMAP on the access layer: a session per connection. */
export function imapProtocol(deps: ImapDeps): ProtocolHandler {
  // The message states of every session's view, one object each however many sessions see it.
  const metas = new MessageMetas();
  return {
    open: (conn) => new ImapSession(conn, deps, metas).run(),
    refusal: imapBye,
  };
}

/** A tagged answer other than OK, thrown by a command: `BAD` for what the client got wrong, `NO` for what it may not do. */
export class Tagged extends Error {
  constructor(
    readonly status: 'NO' | 'BAD',
    text: string,
  ) {
    super(text);
  }
}

/** A command that sent its own tagged answer (STARTTLS, COMPRESS, LOGOUT: what follows it is not plain IMAP). */
export const ANSWERED = Symbol('answered');

/** What a command answers: the tagged OK's text (with its response code), or that it answered itself. */
export type Outcome = string | void | typeof ANSWERED;

export type Handler<C extends Command = Command> = (s: ImapSession, cmd: C, tag: string) => Promise<Outcome>;
export type Handlers = { [N in Command['name']]?: Handler<Command & { name: N }> };

type State = 'not-authenticated' | 'authenticated' | 'selected';

/** Commands each state allows (RFC 9051 §6); any state allows CAPABILITY, NOOP, LOGOUT, ID and COMPRESS. */
const ANY = new Set(['CAPABILITY', 'NOOP', 'LOGOUT', 'ID', 'COMPRESS']);
const BEFORE_LOGIN = new Set(['STARTTLS', 'LOGIN', 'AUTHENTICATE']);
const SELECTED_ONLY = new Set(['CHECK', 'CLOSE', 'UNSELECT', 'EXPUNGE', 'SEARCH', 'SORT', 'THREAD', 'FETCH', 'STORE', 'COPY', 'MOVE']);

/** Commands during which `* n EXPUNGE` must not be sent (RFC 9051 §7.5.1): the client's numbers would shift under it. */
const NO_EXPUNGES = new Set(['FETCH', 'STORE', 'SEARCH', 'SORT', 'THREAD']);

/**
 * One IMAP session (RFC 9051 and RFC 3501), from the greeting to LOGOUT or a dropped
 * connection. After the login it holds the account at its group's primary (shared with the
 * account's other sessions) and listens to the frontend's change feed of it; the selected
 * folder is seen through the session's own message-number view, which takes in what the
 * feed announces and tells the client where the protocol allows. When the primary changes
 * the hold is lost and the session ends with BYE: the next one is served by the new
 * primary, with the same UIDVALIDITY, uids and mod-sequences.
 */
export class ImapSession extends LineSession {
  state: State = 'not-authenticated';
  /** Set once logged in. */
  mailbox!: MailboxSession;
  selected: Selected | undefined;
  /** ENABLEd extensions (upper-cased). */
  readonly enabled = new Set<string>();
  /** CONDSTORE is on: by ENABLE, or a command that used it (RFC 7162 §3.1). */
  condstore = false;
  readonly login: (user: string, password: string) => Promise<string>;
  private idling: { wake(atMs: number): void } | undefined;
  private unlisten: (() => void) | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(
    conn: AccessConnection,
    readonly deps: ImapDeps,
    /** This frontend's message states, shared by the views of every session. */
    readonly metas: MessageMetas,
  ) {
    super(conn, { tls: deps.tls, idleTimeoutMs: () => deps.config().imap.idleTimeoutMs });
    this.login = deps.auth.forSession({ ip: conn.client, protocol: 'imap', session: conn.id });
  }

  get qresync(): boolean {
    return this.enabled.has('QRESYNC');
  }

  get rev2(): boolean {
    return this.enabled.has('IMAP4REV2');
  }

  /** UTF-8 in names and quoted strings: UTF8=ACCEPT, or IMAP4rev2, whose names are UTF-8 (RFC 9051 §5.1, Appendix A). */
  get utf8(): boolean {
    return this.enabled.has('UTF8=ACCEPT') || this.rev2;
  }

  get appendLimit(): number {
    return this.deps.config().smtp.maxMessageBytes;
  }

  capabilities(): string {
    return capabilities({ secure: this.secure, authenticated: this.state !== 'not-authenticated', compressed: this.compressed, appendLimit: this.appendLimit });
  }

  protected greet(): void {
    this.send(`* OK [CAPABILITY ${this.capabilities()}] ${this.deps.config().smtp.hostname} mailgrid IMAP ready`);
  }

  protected reply(error: CodedError): string {
    return imapBye(error);
  }

  protected override ended(): void {
    this.unlisten?.();
    if (this.state !== 'not-authenticated') {
      void this.mailbox.close();
      this.log.info({ event: 'imap.session', account: this.mailbox.account }, 'session ended');
    }
  }

  /** SIGTERM: an idling client is told at once (it is waiting for nothing); others at the end of their command. */
  override drain(): void {
    if (this.idling) this.hangUp(imapBye(Replies.shuttingDown()));
    else super.drain();
  }

  // ---- the output the commands write ----------------------------------------------------

  out(line: string): void {
    this.send(line);
  }

  outBytes(data: Buffer): void {
    this.write(data);
  }

  waitFlushed(): Promise<void> {
    return this.flushed();
  }

  // ---- commands -------------------------------------------------------------------------

  protected async command(first: Buffer): Promise<void> {
    let parsed: TaggedCommand;
    let lines = 0;
    try {
      parsed = await readCommand(
        { line: () => (lines++ === 0 ? Promise.resolve(first) : this.line()), bytes: (n) => this.bytes(n) },
        {
          continuation: () => {
            this.send('+ Ready for literal data');
            return true;
          },
          maxLiteral: (name) => (name === 'APPEND' ? this.appendLimit : 64 * 1024),
          utf8: this.utf8,
          literalPlus: true,
        },
      );
    } catch (err) {
      if (!ImapParseError.is(err)) throw err;
      metrics.imapCommands.inc({ command: 'UNPARSED', result: err.status.toLowerCase() });
      this.send(err.response());
      // A literal the client is sending that was not read: what follows is not a command.
      if (err.unread) this.hangUp('* BYE Literal too large');
      return;
    }
    const { tag, command } = parsed;
    const result = await this.run_(tag, command);
    metrics.imapCommands.inc({ command: command.name, result });
  }

  private async run_(tag: string, command: Command): Promise<string> {
    const name = command.name;
    const allowed =
      ANY.has(name) ||
      (this.state === 'not-authenticated' ? BEFORE_LOGIN.has(name) : !BEFORE_LOGIN.has(name) && (this.state === 'selected' || !SELECTED_ONLY.has(name)));
    if (!allowed) {
      this.send(`${tag} BAD ${this.state === 'not-authenticated' ? 'Log in first' : this.state === 'authenticated' && SELECTED_ONLY.has(name) ? 'Select a mailbox first' : 'Already logged in'}`);
      return 'bad';
    }
    const handler = handlers()[name] as Handler | undefined;
    if (!handler) {
      this.send(`${tag} BAD Command not supported`);
      return 'bad';
    }
    try {
      const outcome = await handler(this, command, tag);
      if (outcome === ANSWERED) return 'ok';
      await this.refresh();
      this.announce(!(NO_EXPUNGES.has(name) && !(command as { uid?: boolean }).uid));
      this.send(`${tag} OK ${outcome || `${name} completed`}`);
      return 'ok';
    } catch (err) {
      if (err instanceof Tagged) {
        this.send(`${tag} ${err.status} ${err.message}`);
        return err.status.toLowerCase();
      }
      const e = toCodedError(err);
      const refusal = imapRefusal(e);
      if (refusal.status === 'BYE') {
        this.hangUp(`* BYE ${refusal.text}`);
        return 'bye';
      }
      if (e.code === 'STORAGE_FAILED' || e.code === 'LOCAL_ERROR') this.log.warn({ event: 'imap.command-failed', command: name, err: e.text }, 'command failed');
      this.send(`${tag} NO ${refusal.text}`);
      return 'no';
    }
  }

  // ---- the account, once logged in ------------------------------------------------------

  /** After a successful login: the account held at its primary, its default folders made, and its changes listened to. */
  async enter(account: string): Promise<void> {
    const mailbox = await this.deps.mailboxes.open(account, { mode: 'shared', session: this.id, log: this.log });
    if (this.isClosed) return void mailbox.close();
    let opened;
    try {
      opened = await mailbox.calls.open(account);
    } catch (err) {
      void mailbox.close();
      throw err;
    }
    if (this.isClosed) return void mailbox.close();
    this.mailbox = mailbox;
    this.state = 'authenticated';
    this.listen(Number(opened.modseq));
    // The primary changed or stopped: this session cannot go on (the next one goes to the new primary).
    void mailbox.lost.then(() => this.hangUp(imapBye(Replies.mailboxChanged())));
  }

  private listen(fromModseq: number): void {
    const listener: ChangeListener = {
      change: (c) => {
        const sel = this.selected;
        if (!sel || !(c.resync || c.folder === sel.folder)) return;
        sel.dirty = true;
        this.idling?.wake(Number(c.atMs));
      },
      ended: () => {
        // A feed that broke while the hold stands (the hold's end ends the session): listen again, and look.
        this.selected?.stale();
        const again = setTimeout(() => !this.isClosed && this.listen(this.selected?.view.highestModseq ?? fromModseq), 1_000);
        again.unref();
        this.unlisten = () => clearTimeout(again);
      },
    };
    this.unlisten = this.mailbox.listen(fromModseq, listener);
  }

  /** Makes `sel` the selected folder, telling the client a previous one closed (QRESYNC, rev2). */
  select(sel: Selected | undefined): void {
    if (this.selected && (this.qresync || this.rev2)) this.send('* OK [CLOSED] Previous mailbox closed');
    this.selected = sel;
    this.state = sel ? 'selected' : 'authenticated';
  }

  /**
   * Brings the selected folder's changes into the view: those the feed announced, or with
   * `force` whatever changed since the view (NOOP, CHECK and IDLE look even if the feed has
   * not spoken yet, so two sessions agree after a NOOP). One look at a time. A look for
   * what the feed told is shared with the account's other sessions here that look for the
   * same at the same time (woken by one change, they ask one Select, not one each).
   */
  async refresh(force = false): Promise<void> {
    while (this.refreshing) await this.refreshing;
    const sel = this.selected;
    if (!sel || (!force && !sel.dirty)) return;
    const alone = force || sel.lookAlone;
    sel.dirty = sel.lookAlone = false;
    this.refreshing = this.look(sel, alone).finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async look(sel: Selected, alone: boolean): Promise<void> {
    const { account, calls } = this.mailbox;
    let res;
    try {
      res = await (alone ? calls.select(account, sel.folder, sel.view.highestModseq) : this.mailbox.changesAfterFeed(sel.folder, sel.view.highestModseq));
    } catch (err) {
      if (toCodedError(err).code === 'NOT_FOUND') return this.hangUp('* BYE [NONEXISTENT] The selected mailbox was deleted or renamed');
      sel.dirty = true;
      sel.lookAlone ||= alone;
      throw err;
    }
    if (this.selected !== sel) return;
    if (res.folder!.uidValidity !== sel.uidValidity) return this.hangUp('* BYE [UIDVALIDITY] The selected mailbox was made anew');
    sel.metas.forget(res.vanished);
    sel.view.update(
      res.messages.map((m) => sel.metas.of(m)),
      res.vanished,
      Number(res.folder!.highestModseq),
    );
  }

  /** Tells the client what the view holds back: expunges only where `expunges` (RFC 9051 §7.5.1). */
  announce(expunges: boolean): void {
    const sel = this.selected;
    if (!sel) return;
    const news = sel.view.untold(expunges);
    if (news.expunged.length) {
      if (this.qresync) this.send(`* VANISHED ${sequenceSet(news.expunged.map((e) => e.uid))}`);
      else for (const e of news.expunged) this.send(`* ${e.seq} EXPUNGE`);
    }
    if (news.exists !== undefined) this.send(`* ${news.exists} EXISTS`);
    for (const { seq, meta } of news.flags) this.send(`* ${seq} FETCH (UID ${meta.uid} FLAGS (${meta.flags.join(' ')})${this.condstore ? ` MODSEQ (${meta.modseq})` : ''})`);
  }

  // ---- what the login commands need of the connection ---------------------------------------

  get isSecure(): boolean {
    return this.secure;
  }

  logout(): void {
    this.hangUp();
  }

  async startTls_(tag: string): Promise<typeof ANSWERED> {
    if (this.secure) throw new Tagged('BAD', 'TLS is on already');
    this.send(`${tag} OK Begin TLS negotiation now`);
    this.startTls();
    return ANSWERED;
  }

  async compress_(tag: string): Promise<typeof ANSWERED> {
    if (this.compressed) throw new Tagged('NO', '[COMPRESSIONACTIVE] DEFLATE is on already');
    this.send(`${tag} OK DEFLATE active`);
    this.compress();
    return ANSWERED;
  }

  /** A SASL challenge (`+ text`) and the client's response; `*` cancels (RFC 9051 §6.2.2). */
  async challenge(text: string): Promise<string> {
    this.send(`+ ${text}`);
    const line = (await this.line()).toString('latin1').trim();
    if (line === '*') throw new Tagged('BAD', 'Authentication cancelled');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(line)) throw new Tagged('BAD', 'Malformed base64');
    return line;
  }

  /** The login, then the account; TOO_MANY_AUTH_FAILURES ends the session (as BYE, by the reply table). */
  async logIn(user: string, password: string): Promise<string> {
    const account = await this.login(user, password);
    await this.enter(account);
    return `[CAPABILITY ${this.capabilities()}] Logged in`;
  }

  // ---- IDLE -----------------------------------------------------------------------------

  /** IDLE (RFC 2177), also before SELECT: changes are told as they come, until DONE. */
  async idle(tag: string): Promise<void> {
    await this.refresh(true);
    this.announce(true);
    this.send('+ idling');
    let pending = Promise.resolve();
    this.idling = {
      wake: (atMs) => {
        pending = pending.then(async () => {
          try {
            await this.refresh();
            this.announce(true);
            if (atMs) metrics.imapNotifySeconds.observe(Math.max(0, Date.now() - atMs) / 1000);
          } catch (err) {
            this.log.debug({ event: 'imap.idle-refresh-failed', err: (err as Error).message }, 'could not look at the changes');
          }
        });
      },
    };
    metrics.imapIdle.inc();
    let done: Buffer;
    try {
      done = await this.line();
    } finally {
      this.idling = undefined;
      metrics.imapIdle.dec();
    }
    await pending;
    if (done.toString('latin1').trim().toUpperCase() !== 'DONE') throw new Tagged('BAD', 'Expected DONE');
  }
}

/** Every command's handler, by name (made once: the groups' modules import this one). */
let table: Handlers | undefined;
const handlers = () => (table ??= { ...sessionCommands, ...mailboxCommands, ...selectCommands, ...messageCommands });

/** The commands of any state, and the login. */
const sessionCommands: Handlers = {
  CAPABILITY: async (s) => s.out(`* CAPABILITY ${s.capabilities()}`),

  NOOP: async (s) => s.refresh(true),
  CHECK: async (s) => s.refresh(true),

  LOGOUT: async (s, _cmd, tag) => {
    s.out('* BYE Logging out');
    s.out(`${tag} OK LOGOUT completed`);
    s.logout();
    return ANSWERED;
  },

  ID: async (s) => {
    s.out('* ID ("name" "mailgrid" "vendor" "mailgrid")');
  },

  ENABLE: async (s, cmd) => {
    if (s.state === 'not-authenticated') throw new Tagged('BAD', 'Log in first');
    const now: string[] = [];
    for (const c of cmd.capabilities.map((c) => c.toUpperCase())) {
      if (!ENABLEABLE.has(c) || s.enabled.has(c)) continue;
      s.enabled.add(c);
      now.push(c === 'IMAP4REV2' ? 'IMAP4rev2' : c);
      // QRESYNC implies CONDSTORE (RFC 7162 §3.2.3).
      if (c === 'QRESYNC' || c === 'CONDSTORE') s.condstore = true;
    }
    s.out(`* ENABLED${now.map((c) => ` ${c}`).join('')}`);
  },

  STARTTLS: async (s, _cmd, tag) => s.startTls_(tag),

  COMPRESS: async (s, cmd, tag) => {
    if (cmd.mechanism.toUpperCase() !== 'DEFLATE') throw new Tagged('BAD', 'Unknown compression mechanism');
    return s.compress_(tag);
  },

  LOGIN: async (s, cmd) => {
    if (!s.isSecure) throw new Tagged('NO', '[PRIVACYREQUIRED] STARTTLS first');
    return s.logIn(cmd.user, cmd.password);
  },

  AUTHENTICATE: async (s, cmd) => {
    if (!s.isSecure) throw new Tagged('NO', '[PRIVACYREQUIRED] STARTTLS first');
    const mechanism = cmd.mechanism.toUpperCase();
    if (mechanism === 'PLAIN') {
      const response = cmd.initial ?? (await s.challenge(''));
      const [authzid, authcid, password] = Buffer.from(response, 'base64').toString('utf8').split('\0');
      if (password === undefined || (authzid && authzid !== authcid)) throw new Tagged('BAD', 'Malformed PLAIN response');
      return s.logIn(authcid, password);
    }
    if (mechanism === 'LOGIN') {
      // The user may come as SASL-IR's initial response; the prompts are "Username:" and "Password:".
      const user = Buffer.from(cmd.initial ?? (await s.challenge(Buffer.from('Username:').toString('base64'))), 'base64').toString('utf8');
      const password = Buffer.from(await s.challenge(Buffer.from('Password:').toString('base64')), 'base64').toString('utf8');
      return s.logIn(user, password);
    }
    throw new Tagged('NO', '[CANNOT] Unsupported authentication mechanism');
  },

  IDLE: async (s, _cmd, tag) => s.idle(tag),
};
