import { Replies, type Logger } from '@mailgrid/core';
import { note, type Accepted, type Submission, type TrailRecord } from '@mailgrid/mailflow';
import { buildDsn } from '@mailgrid/queue';
import { evaluate, INBOX, MessageView, parseSieve, vacationRefusal, vacationReply, type Script } from '@mailgrid/rules';
import type { MailStore } from '@mailgrid/store';

/** The header a redirect adds, naming the account it came from (the one Dovecot's Pigeonhole uses). */
const REDIRECTED_FROM = 'X-Sieve-Redirected-From';
const DAY_MS = 86_400_000;

/** One recipient's copy, as the rules see it. */
export interface RuleDelivery {
  messageId: string;
  account: string;
  /** The address as given in RCPT TO (the envelope "to"). */
  address: string;
  mailFrom: string;
  receivedAt: number;
  body: Buffer;
  view: MessageView;
}

/** What the store does with the copy: these folders (none: not stored), and a vacation reply to remember. */
export interface Disposition {
  folders: string[];
  vacation?: { sender: string; until: number };
  actions: string[];
}

/**
 * An account's rules applied at local delivery, on the backend that owns the account (BRIEF
 * §2.2). What they make — redirected copies, vacation replies, a reject's DSN — enters the
 * mail flow through this node's submit mode and is durably queued before the delivery is
 * answered; if it cannot be, the delivery fails temporarily and nothing is stored.
 */
export class AccountRules {
  private readonly compiled = new Map<string, { source: string; script: Script | undefined }>();

  constructor(
    private readonly deps: {
      store: MailStore;
      submit: (s: Submission) => Promise<Accepted>;
      hostname: string;
      log: Logger;
    },
  ) {}

  /** The account's rules applied (see `script`). Throws a 4xx MailError when made mail could not be queued. */
  async apply(script: Script, d: RuleDelivery): Promise<Disposition> {
    const log = this.deps.log;
    const result = evaluate(script, { message: d.view, size: d.body.length, envelope: { from: d.mailFrom, to: d.address } });
    const trail: TrailRecord[] = [];
    const ids = { messageId: d.messageId, account: d.account };
    for (const problem of result.problems) note(trail, log, 'warn', { event: 'rules.action-ignored', ...ids, problem }, 'a rule action was ignored');
    let folders = result.folders;
    let redirects = result.redirects;
    if (redirects.length && d.view.header(REDIRECTED_FROM).some((v) => v.trim().toLowerCase() === d.account)) {
      // It came back to an account it was redirected from: kept here, not sent round again.
      note(trail, log, 'warn', { event: 'rules.redirect-loop', ...ids, redirects }, 'message came back to an account it was redirected from; kept');
      redirects = [];
      if (!folders.length) folders = [INBOX];
    }
    note(trail, log, 'info', { event: 'rules.applied', ...ids, actions: result.actions.join(' ') || 'keep' }, "account's rules applied");

    const made: { what: string; redirect?: boolean; submission: Submission }[] = [];
    if (redirects.length) {
      const stamp = Buffer.from(`${REDIRECTED_FROM}: ${d.account}\r\n`);
      made.push({ what: `redirect to ${redirects.join(', ')}`, redirect: true, submission: { mailFrom: d.mailFrom, recipients: redirects, body: Buffer.concat([stamp, d.body]), receivedAt: d.receivedAt, mayRelay: true, trail } });
    }
    if (result.reject !== undefined) {
      if (!d.mailFrom) note(trail, log, 'info', { event: 'rules.reject-unreported', ...ids }, 'rejected; no DSN to the null sender');
      else {
        const dsn = buildDsn({
          reportingMta: this.deps.hostname,
          from: `MAILER-DAEMON@${this.deps.hostname}`,
          to: d.mailFrom,
          queueId: d.messageId,
          arrivalDate: d.receivedAt,
          original: d.body,
          recipients: [{ address: d.address, action: 'failed', reply: Replies.rejectedByRules(result.reject).reply }],
        });
        made.push({ what: 'reject DSN', submission: { mailFrom: '', recipients: [d.mailFrom], body: dsn, isDsn: true, mayRelay: true, trail } });
      }
    }
    let vacation: Disposition['vacation'];
    if (result.vacation) {
      const v = result.vacation;
      const now = Date.now();
      // The address it came to counts as the account's own (an alias).
      const refusal = vacationRefusal({ ...v, addresses: [...v.addresses, d.address] }, { mailFrom: d.mailFrom, account: d.account, message: d.view }) ?? (this.deps.store.vacationAnswered(d.account, d.mailFrom, now) ? 'answered within the period' : undefined);
      if (refusal) log.info({ event: 'rules.vacation-skipped', ...ids, to: d.mailFrom, why: refusal }, 'no vacation reply');
      else {
        const reply = await vacationReply(v, { mailFrom: d.mailFrom, account: d.account, message: d.view });
        made.push({ what: 'vacation reply', submission: { mailFrom: '', recipients: [d.mailFrom], body: reply, mayRelay: true, trail } });
        vacation = { sender: d.mailFrom, until: now + v.days * DAY_MS };
      }
    }

    for (const m of made) {
      const accepted = await this.deps.submit(m.submission);
      if (!accepted.accepted && accepted.reply.code < 500)
        throw Replies.localError(new Error(`${m.what} not queued: ${accepted.reply.code} ${accepted.reply.enhanced} ${accepted.reply.text}`));
      const refused = accepted.accepted ? accepted.recipients.filter((r) => r.state === 'failed') : [];
      if (accepted.accepted && !refused.length) continue;
      // Refused for good (an unknown address to redirect to): the action failed, so the
      // message is kept rather than lost (RFC 5228 §2.10.6).
      log.warn({ event: 'rules.made-refused', ...ids, what: m.what, reply: accepted.reply, refused: refused.map((r) => `${r.address}=${r.reply.code}`).join(' ') }, 'mail made by the rules was refused');
      if (m.redirect && !folders.includes(INBOX)) folders = [...folders, INBOX];
    }
    return { folders, vacation, actions: result.actions };
  }

  /** The account's script, parsed once per change; undefined when it has none (the copy goes to INBOX). */
  script(account: string): Script | undefined {
    const source = this.deps.store.rules(account);
    if (source === undefined) return undefined;
    const cached = this.compiled.get(account);
    if (cached?.source === source) return cached.script;
    let script: Script | undefined;
    try {
      script = parseSieve(source);
    } catch (err) {
      // Checked when saved; a script an older version took is skipped, not applied half.
      this.deps.log.error({ event: 'rules.unparsable', account, err: (err as Error).message }, 'stored rules do not parse; mail is kept in INBOX');
    }
    if (this.compiled.size > 10_000) this.compiled.clear();
    this.compiled.set(account, { source, script });
    return script;
  }
}
