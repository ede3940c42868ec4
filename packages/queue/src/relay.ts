import type { Logger } from '@mailgrid/core';
import { promises as dns } from 'node:dns';
import { createRequire } from 'node:module';
import type { Reply } from './queue-store.js';

// nodemailer's SMTP client: the connection class itself, without the mailer around it.
const SMTPConnection = createRequire(import.meta.url)('nodemailer/lib/smtp-connection') as new (options: object) => SmtpClient;

interface SmtpClient {
  connect(cb: (err?: Error) => void): void;
  send(envelope: { from: string; to: string[]; size?: number }, message: Buffer, cb: (err: SmtpClientError | null, info?: SendInfo) => void): void;
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

export interface RelayResult {
  address: string;
  delivered: boolean;
  reply: Reply;
  remoteMta?: string;
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

  async send(domain: string, mailFrom: string, recipients: string[], body: Buffer): Promise<RelayResult[]> {
    const destination = this.options.smarthost || domain;
    await this.acquire(destination);
    try {
      return await this.deliver(domain, mailFrom, recipients, body);
    } finally {
      this.release(destination);
    }
  }

  private async deliver(domain: string, mailFrom: string, recipients: string[], body: Buffer): Promise<RelayResult[]> {
    const all = (reply: Reply, remoteMta?: string) => recipients.map((address) => ({ address, delivered: false, reply, remoteMta }));
    let hosts: { host: string; port: number }[];
    try {
      hosts = await this.exchangers(domain);
    } catch (err) {
      return all((err as { reply: Reply }).reply ?? { code: 451, enhanced: '4.4.3', text: `DNS lookup for ${domain} failed` });
    }
    let lastError: Reply = { code: 451, enhanced: '4.4.1', text: `No mail exchanger of ${domain} answered` };
    for (const { host, port } of hosts) {
      const remoteMta = `dns; ${host}`;
      const attempt = await this.attempt(host, port, mailFrom, recipients, body).catch((err: SmtpClientError) => err);
      if (!(attempt instanceof Error)) {
        return recipients.map((address) => {
          const rejected = attempt.rejectedErrors?.find((e) => e.recipient === address);
          if (rejected) return { address, delivered: false, reply: replyOf(rejected), remoteMta };
          return { address, delivered: true, reply: { code: 250, enhanced: '2.0.0', text: attempt.response }, remoteMta };
        });
      }
      if (attempt.responseCode) {
        // The server answered: that answer stands for every recipient it covers.
        if (attempt.rejectedErrors?.length) {
          return recipients.map((address) => {
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

  private attempt(host: string, port: number, mailFrom: string, to: string[], body: Buffer): Promise<SendInfo> {
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
    return new Promise<SendInfo>((resolve, reject) => {
      client.once('error', reject);
      client.connect((err) => {
        if (err) return reject(err);
        client.send({ from: mailFrom, to, size: body.length }, body, (sendErr, info) => {
          client.quit();
          if (sendErr) reject(sendErr);
          else resolve(info!);
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
