import type { Logger } from '@mailgrid/core';
import { promises as dns } from 'node:dns';
import { createRequire } from 'node:module';
import type { Notify, Reply } from './queue-store.js';

// nodemailer's SMTP client: the connection class itself, without the mailer around it.
const SMTPConnection = createRequire(import.meta.url)('nodemailer/lib/smtp-connection') as new (options: object) => SmtpClient;

interface SmtpClient {
  connect(cb: (err?: Error) => void): void;
  send(
    envelope: { from: string; to: string[]; size?: number; use8BitMime?: boolean; dsn?: { ret?: string; envid?: string; notify?: string; orcpt?: string } },
    message: Buffer,
    cb: (err: SmtpClientError | null, info?: SendInfo) => void,
  ): void;
  quit(): void;
  close(): void;
  once(event: 'error' | 'end', cb: (err?: Error) => void): void;
  on(event: 'error' | 'end', cb: (err?: Error) => void): void;
}
interface SmtpClientError extends Error {
  code?: string;
  responseCode?: number;
  response?: string;
  rejectedErrors?: SmtpClientError[];
  recipient?: string;
}
interface SendInfo {
  accepted: string[];
  rejected: string[];
  rejectedErrors?: SmtpClientError[];
  response: string;
}

export interface RelayOptions {
  /** `host:port` to send everything through instead of the destination's MX. */
  smarthost: string;
  heloName: string;
  timeoutMs: number;
  /** Connections at once to one destination (domain or smarthost). */
  perDestination: number;
  log: Logger;
  /** DNS used for MX lookups (the system resolver unless a test gives another). */
  dns?: Pick<typeof dns, 'resolveMx'>;
}

/** A message as it is relayed, with what the sender asked of the DSN extension (RFC 3461). */
export interface RelayMessage {
  mailFrom: string;
  body: Buffer;
  envid?: string;
  ret?: 'FULL' | 'HDRS';
  /** 8-bit content: sent with BODY=8BITMIME, and only to a next hop that offers it. */
  eightBit?: boolean;
}

export interface RelayRecipient {
  address: string;
  notify?: Notify[];
  orcpt?: string;
}

export interface RelayResult {
  address: string;
  delivered: boolean;
  reply: Reply;
  remoteMta?: string;
  /** The next hop offered DSN and took the request along: reports are its to send now. */
  dsnPassed?: boolean;
}

/**
 * Hands messages for other domains to their mail exchangers (MX by priority, random among
 * equals, A/AAAA when there is no MX) or to a smarthost, with nodemailer's SMTP client and
 * opportunistic STARTTLS. Every outcome comes back per recipient as a reply; connection and
 * DNS faults are temporary.
 */
export class Relay {
  private readonly active = new Map<string, number>();
  private readonly waiting = new Map<string, (() => void)[]>();

  constructor(private readonly options: RelayOptions) {}

  async send(domain: string, message: RelayMessage, recipients: RelayRecipient[]): Promise<RelayResult[]> {
    const destination = this.options.smarthost || domain;
    await this.acquire(destination);
    try {
      // Recipients with different DSN requests need their own transactions (NOTIFY and
      // ORCPT go with each RCPT, nodemailer takes one of each per message).
      const groups = new Map<string, RelayRecipient[]>();
      for (const r of recipients) {
        const key = `${r.notify?.join(',') ?? ''}|${r.orcpt ?? ''}`;
        groups.set(key, [...(groups.get(key) ?? []), r]);
      }
      const body = foldLongLines(message.body);
      const results = await Promise.all([...groups.values()].map((group) => this.deliver(domain, { ...message, body }, group)));
      const byAddress = new Map(results.flat().map((r) => [r.address, r]));
      return recipients.map((r) => byAddress.get(r.address)!);
    } finally {
      this.release(destination);
    }
  }

  private async deliver(domain: string, message: RelayMessage, recipients: RelayRecipient[]): Promise<RelayResult[]> {
    const all = (reply: Reply, remoteMta?: string) => recipients.map((r) => ({ address: r.address, delivered: false, reply, remoteMta }));
    let hosts: { host: string; port: number }[];
    try {
      hosts = await this.exchangers(domain);
    } catch (err) {
      return all((err as { reply: Reply }).reply ?? { code: 451, enhanced: '4.4.3', text: `DNS lookup for ${domain} failed` });
    }
    let lastError: Reply = { code: 451, enhanced: '4.4.1', text: `No mail exchanger of ${domain} answered` };
    for (const { host, port } of hosts) {
      const remoteMta = `dns; ${host}`;
      const attempt = await this.attempt(host, port, message, recipients).catch((err: SmtpClientError) => err);
      if (!(attempt instanceof Error)) {
        return recipients.map(({ address }) => {
          const rejected = attempt.info.rejectedErrors?.find((e) => e.recipient === address);
          if (rejected) return { address, delivered: false, reply: replyOf(rejected), remoteMta };
          return { address, delivered: true, reply: { code: 250, enhanced: '2.0.0', text: attempt.info.response }, remoteMta, dsnPassed: attempt.dsn };
        });
      }
      if (attempt.responseCode) {
        // The server answered: that answer stands for every recipient it covers.
        if (attempt.rejectedErrors?.length) {
          return recipients.map(({ address }) => {
            const e = attempt.rejectedErrors!.find((x) => x.recipient === address) ?? attempt;
            return { address, delivered: false, reply: replyOf(e), remoteMta };
          });
        }
        return all(replyOf(attempt), remoteMta);
      }
      this.options.log.info({ event: 'relay.connect-failed', host, port, err: attempt.message }, 'mail exchanger unreachable, trying the next');
      lastError = { code: 451, enhanced: '4.4.1', text: `${host}: ${attempt.message}` };
    }
    return all(lastError);
  }

  private attempt(host: string, port: number, m: RelayMessage, to: RelayRecipient[]): Promise<{ info: SendInfo; dsn: boolean }> {
    const t = this.options.timeoutMs;
    const client = new SMTPConnection({
      host,
      port,
      name: this.options.heloName,
      opportunisticTLS: true,
      // Opportunistic: encrypt when offered, do not refuse an MX over its certificate.
      tls: { rejectUnauthorized: false },
      connectionTimeout: t,
      greetingTimeout: t,
      socketTimeout: t,
    });
    return new Promise<{ info: SendInfo; dsn: boolean }>((resolve, reject) => {
      client.once('error', reject);
      client.connect((err) => {
        if (err) return reject(err);
        const offers = extensions(client);
        if (m.eightBit && !offers.includes('8BITMIME')) {
          // mailgrid does not convert 8-bit mail to 7 bits: the sender hears it at once (5.6.3).
          client.quit();
          return reject(Object.assign(new Error('no 8BITMIME'), { responseCode: 554, response: `554 5.6.3 ${host} does not accept 8-bit mail (no 8BITMIME) and mailgrid does not convert it` }));
        }
        const dsn = offers.includes('DSN');
        const [first] = to;
        const envelope = {
          from: m.mailFrom,
          to: to.map((r) => r.address),
          size: m.body.length,
          use8BitMime: m.eightBit,
          dsn: dsn ? { ret: m.ret, envid: m.envid, notify: first.notify?.join(','), orcpt: first.orcpt } : undefined,
        };
        client.send(envelope, m.body, (sendErr, info) => {
          client.quit();
          if (sendErr) reject(sendErr);
          else resolve({ info: info!, dsn });
        });
      });
    }).finally(() => setTimeout(() => client.close(), 1_000).unref());
  }

  /** Where mail for `domain` goes, in the order to try. */
  async exchangers(domain: string): Promise<{ host: string; port: number }[]> {
    if (this.options.smarthost) {
      const i = this.options.smarthost.lastIndexOf(':');
      return i > 0 ? [{ host: this.options.smarthost.slice(0, i), port: Number(this.options.smarthost.slice(i + 1)) }] : [{ host: this.options.smarthost, port: 25 }];
    }
    let mx: { exchange: string; priority: number }[];
    try {
      mx = await (this.options.dns ?? dns).resolveMx(domain);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOTFOUND') throw { reply: { code: 550, enhanced: '5.1.2', text: `Domain ${domain} does not exist` } };
      if (code !== 'ENODATA') throw { reply: { code: 451, enhanced: '4.4.3', text: `DNS lookup for ${domain} failed (${code})` } };
      mx = [];
    }
    if (mx.length === 1 && (mx[0].exchange === '' || mx[0].exchange === '.'))
      throw { reply: { code: 556, enhanced: '5.1.10', text: `Domain ${domain} accepts no mail (null MX)` } };
    if (!mx.length) return [{ host: domain, port: 25 }]; // implicit MX: the domain's own A/AAAA
    const byPriority = new Map<number, string[]>();
    for (const r of mx) byPriority.set(r.priority, [...(byPriority.get(r.priority) ?? []), r.exchange]);
    return [...byPriority.keys()]
      .sort((a, b) => a - b)
      .flatMap((p) => shuffle(byPriority.get(p)!))
      .map((host) => ({ host, port: 25 }));
  }

  private async acquire(destination: string): Promise<void> {
    const n = this.active.get(destination) ?? 0;
    if (n < this.options.perDestination) {
      this.active.set(destination, n + 1);
      return;
    }
    await new Promise<void>((resolve) => this.waiting.set(destination, [...(this.waiting.get(destination) ?? []), resolve]));
  }

  private release(destination: string): void {
    const next = this.waiting.get(destination)?.shift();
    if (next) next();
    else this.active.set(destination, (this.active.get(destination) ?? 1) - 1);
  }
}

/** The extensions the server offered in its EHLO (nodemailer keeps them on the connection). */
function extensions(client: SmtpClient): string[] {
  const offered = (client as unknown as { _supportedExtensions?: unknown })._supportedExtensions;
  if (!Array.isArray(offered)) throw new Error('nodemailer changed SMTPConnection#_supportedExtensions; review relay.ts');
  return offered as string[];
}

/**
 * Lines longer than 998 octets (RFC 5322 §2.1.1) folded the way Postfix does it
 * (smtp_line_length_limit): the rest goes on a continuation line that starts with a space.
 * A message without such lines is returned as it is.
 */
export function foldLongLines(body: Buffer, limit = 998): Buffer {
  /** Each line's start, its end before CRLF, and where the next one starts. */
  const lines = function* () {
    for (let start = 0; start < body.length; ) {
      const lf = body.indexOf(0x0a, start);
      const next = lf < 0 ? body.length : lf + 1;
      yield [start, lf > start && body[lf - 1] === 0x0d ? lf - 1 : lf < 0 ? body.length : lf, next] as const;
      start = next;
    }
  };
  let long = false;
  for (const [start, end] of lines()) if (end - start > limit) long = true;
  if (!long) return body;
  const out: Buffer[] = [];
  const fold = Buffer.from('\r\n ');
  for (const [start, end, next] of lines()) {
    let pos = start;
    for (let width = limit; end - pos > width; width = limit - 1) {
      out.push(body.subarray(pos, pos + width), fold);
      pos += width;
    }
    out.push(body.subarray(pos, next));
  }
  return Buffer.concat(out);
}

function replyOf(err: SmtpClientError): Reply {
  const code = err.responseCode ?? 451;
  const text = (err.response ?? err.message).replace(/^\d{3}[ -]/, '');
  const enhanced = /^([245]\.\d{1,3}\.\d{1,3}) /.exec(text)?.[1] ?? (code >= 500 ? '5.0.0' : '4.0.0');
  return { code, enhanced, text: text.replace(/^[245]\.\d{1,3}\.\d{1,3} /, '') };
}

function shuffle<T>(list: T[]): T[] {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [list[i], list[j]] = [list[j], list[i]];
  }
  return list;
}
