import type { Config, Logger, Service, ServiceState } from '@mailgrid/core';
import { existsSync, mkdirSync, readFileSync, unwatchFile, watchFile, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Socket } from 'node:net';
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls';

/** What every TLS listener of a node is given (RFC 8996: nothing older than TLS 1.2). */
export interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
  minVersion: 'TLSv1.2';
}

/** How long a client may take over its TLS handshake. */
const HANDSHAKE_MS = 30_000;

/**
 * The server side of TLS over an accepted socket (an implicit-TLS listener, or STARTTLS/STLS
 * in a session). A client that goes, or never finishes the handshake, is not kept half-open;
 * `failed` hears of a handshake that went wrong (the socket is gone then).
 */
export function serverTls(plain: Socket, context: SecureContext, failed: (err: Error) => void): TLSSocket {
  const secure = new TLSSocket(plain, { isServer: true, secureContext: context, minVersion: 'TLSv1.2' });
  secure.on('error', (err) => {
    failed(err);
    plain.destroy();
  });
  plain.once('end', () => plain.destroy());
  const handshake = setTimeout(() => plain.destroy(), HANDSHAKE_MS);
  handshake.unref();
  secure.once('secure', () => clearTimeout(handshake));
  secure.once('close', () => clearTimeout(handshake));
  return secure;
}

/**
 * The node's one certificate for every access listener: SMTP (STARTTLS), submission
 * (STARTTLS and implicit TLS), POP3 (STLS and POP3S) and what comes after them: from `tls.keyFile`/`tls.certFile`, read again when either changes
 * (a renewed certificate is used by the next handshake, no restart); without them a
 * self-signed one made once in the data folder, and the log says so. A file that does not
 * make a valid pair is logged and the previous pair kept.
 */
export class TlsSource implements Service {
  readonly name = 'tls';
  private _state: ServiceState = 'new';
  private material: TlsMaterial | undefined;
  private secure: SecureContext | undefined;
  private readonly listeners: ((m: TlsMaterial) => void)[] = [];
  private readonly log: Logger;

  constructor(
    private readonly config: Config,
    log: Logger,
  ) {
    this.log = log.child({ component: 'tls' });
  }

  get state(): ServiceState {
    return this._state;
  }

  /** Whether an operator's certificate is configured (only then is STARTTLS offered on the MX port). */
  get configured(): boolean {
    return !!this.config.tls.certFile;
  }

  /** The current pair; loaded by start(). */
  get current(): TlsMaterial {
    if (!this.material) throw new Error('TLS material is not loaded yet');
    return this.material;
  }

  get context(): SecureContext {
    return (this.secure ??= createSecureContext(this.current));
  }

  /** Called with the new pair after each reload. */
  onChange(listener: (m: TlsMaterial) => void): void {
    this.listeners.push(listener);
  }

  async start(): Promise<void> {
    this._state = 'starting';
    if (this.configured) {
      this.material = this.read();
      for (const file of [this.config.tls.keyFile, this.config.tls.certFile]) watchFile(file, { interval: 2_000 }, () => this.reload());
      this.log.info({ event: 'tls.loaded', cert: this.config.tls.certFile }, 'certificate loaded');
    } else this.material = await this.selfSigned();
    this._state = 'running';
  }

  async stop(): Promise<void> {
    if (this.configured) for (const file of [this.config.tls.keyFile, this.config.tls.certFile]) unwatchFile(file);
    this._state = 'stopped';
  }

  private read(): TlsMaterial {
    const m: TlsMaterial = { key: readFileSync(this.config.tls.keyFile), cert: readFileSync(this.config.tls.certFile), minVersion: 'TLSv1.2' };
    createSecureContext(m); // throws unless the key and certificate make a pair
    return m;
  }

  private reload(): void {
    try {
      this.material = this.read();
      this.secure = undefined;
    } catch (err) {
      // A renewal writes two files one after the other: the next change event loads the pair.
      this.log.warn({ event: 'tls.reload-failed', err: (err as Error).message }, 'certificate files changed but do not load; keeping the previous pair');
      return;
    }
    this.log.info({ event: 'tls.reloaded', cert: this.config.tls.certFile }, 'certificate reloaded');
    for (const l of this.listeners) l(this.material);
  }

  private async selfSigned(): Promise<TlsMaterial> {
    const dir = join(resolve(this.config.dataDir), 'tls');
    const keyFile = join(dir, 'self-signed.key');
    const certFile = join(dir, 'self-signed.crt');
    if (!existsSync(keyFile) || !existsSync(certFile)) {
      const name = this.config.smtp.hostname;
      // Loaded only here: its X.509 stack (and reflect-metadata's global polyfill) is for nodes without a certificate.
      const { generate } = await import('selfsigned');
      const pems = await generate([{ name: 'commonName', value: name }], {
        keyType: 'ec',
        days: 3650,
        extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: name }] }],
      } as Parameters<typeof generate>[1]);
      mkdirSync(dir, { recursive: true });
      writeFileSync(keyFile, pems.private, { mode: 0o600 });
      writeFileSync(certFile, pems.cert);
    }
    this.log.warn(
      { event: 'tls.self-signed', cert: certFile },
      'no certificate configured (tls.certFile, tls.keyFile): using a self-signed one; clients will not trust it',
    );
    return { key: readFileSync(keyFile), cert: readFileSync(certFile), minVersion: 'TLSv1.2' };
  }
}
