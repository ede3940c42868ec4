import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createLogger, loadConfig, type CodedError, type Config } from '@mailgrid/core';
import { Pop3Transcript } from '@mailgrid/testing';
import type { AccessConnection, ProtocolHandler } from './connection.js';
import { AccessListener } from './listener.js';
import { LineSession } from './session.js';
import { TlsSource } from './tls-source.js';

/**
 * The access layer with a protocol of the tests' own in the pop3 slot of the registry: an
 * echo session that says who it thinks the client is, reads a literal (`LIT n`), upgrades
 * (`STLS`), and takes as long as it is told (`WAIT ms`). Real sockets on loopback.
 */
class Echo extends LineSession {
  protected greet(): void {
    this.send(`+OK hello ${this.client} ${this.secure ? 'tls' : 'plain'}`);
  }

  protected reply(error: CodedError): string {
    return `-ERR ${error.code}`;
  }

  protected async command(line: Buffer): Promise<void> {
    const [verb, arg] = line.toString('latin1').split(' ');
    if (verb === 'LIT') {
      this.send('+ go on');
      const bytes = await this.bytes(Number(arg));
      const rest = (await this.line()).toString('latin1');
      return this.send(`+OK ${bytes.length} ${JSON.stringify(bytes.toString('latin1'))} ${rest}`);
    }
    if (verb === 'STLS') {
      this.send('+OK begin');
      return this.startTls();
    }
    if (verb === 'WAIT') {
      this.send('+ waiting');
      await new Promise((r) => setTimeout(r, Number(arg)));
    }
    this.send(`+OK ${line.toString('latin1')}`);
  }
}

const config = (env: Record<string, string>): Config => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mailgrid-access-'));
  return loadConfig({ env: { MAILGRID_DATA_DIR: dataDir, MAILGRID_POP3_PORT: '0', MAILGRID_POP3_TLS_PORT: '0', ...env } });
};

async function layer(env: Record<string, string> = {}, greetingDelayMs = 0, tlsPort?: number) {
  const c = config(env);
  // Port 0 is "off" for a listener that is not always on: a real port each.
  const free = async () => (await import('@mailgrid/core')).freePort();
  const cfg: Config = { ...c, pop3: { ...c.pop3, port: await free(), tlsPort: tlsPort ?? (await free()) } };
  const log = createLogger({ level: 'silent' });
  const tls = new TlsSource(cfg, log);
  await tls.start();
  const handler: ProtocolHandler = {
    open: (conn: AccessConnection) => new Echo(conn, { tls, idleTimeoutMs: () => Number(env.IDLE ?? 60_000) }).run(),
    refusal: (err) => `-ERR ${err.code}`,
    greetingDelayMs: () => greetingDelayMs,
  };
  const access = new AccessListener({ config: cfg, tls, log, handlers: { pop3: handler } });
  await access.start();
  return { access, plain: cfg.pop3.port, secure: cfg.pop3.tlsPort, cfg };
}

describe('AccessListener', () => {
  let l: Awaited<ReturnType<typeof layer>>;
  before(async () => {
    l = await layer({ MAILGRID_LISTEN_PROXY_PROTOCOL: 'true', MAILGRID_LISTEN_PROXY_FROM: '127.0.0.1' });
  });
  after(() => l.access.stop(1_000));

  it('takes the client address from a PROXY header of a balancer only', async () => {
    const balanced = await Pop3Transcript.open(l.plain, { proxy: 'PROXY TCP4 192.0.2.7 127.0.0.1 40000 110\r\n' });
    await balanced.expect('+OK hello 192.0.2.7 plain');
    balanced.close();
    // From another address the same line is a command of the session, and the real address counts.
    const direct = await Pop3Transcript.open(l.plain, { localAddress: '127.0.0.2' });
    await direct.expect('+OK hello 127.0.0.2 plain');
    await direct.send('PROXY TCP4 192.0.2.7 127.0.0.1 40000 110', '+OK PROXY TCP4');
    direct.close();
    // A balancer's connection without a valid header is dropped.
    const bad = await Pop3Transcript.open(l.plain, { proxy: 'PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n' });
    await bad.closed();
  });

  it('does the implicit TLS handshake before the session starts', async () => {
    const s = await Pop3Transcript.open(l.secure, { tls: true, proxy: 'PROXY TCP6 2001:db8::1 ::1 40000 995\r\n' });
    await s.expect('+OK hello 2001:db8::1 tls');
    assert.match(String(s.tlsVersion), /^TLSv1\.[23]$/);
    s.close();
  });

  it('reads a literal of a given length whatever it holds, then the rest of the command', async () => {
    const s = await Pop3Transcript.open(l.plain, { localAddress: '127.0.0.4' });
    await s.expect('+OK hello');
    s.write('LIT 7\r\n');
    await s.expect('+ go on');
    s.write('a\r\nb\r\nc and more\r\n');
    await s.expect('+OK 7 "a\\r\\nb\\r\\nc"  and more');
    s.close();
  });

  it('drops what a client sent after STLS in the clear (no command rides into the TLS session)', async () => {
    const s = await Pop3Transcript.open(l.plain, { localAddress: '127.0.0.5' });
    await s.expect('+OK hello');
    s.write('STLS\r\nINJECTED\r\n');
    await s.expect('+OK begin');
    await s.startTls();
    await s.send('AFTER', '+OK AFTER');
    s.close();
  });
});

describe('AccessListener limits and drain', () => {
  it('a port it cannot have fails the start and lets go of the ports it took before (nothing keeps the process alive)', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    const servers = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap').length;
    const before = servers();
    try {
      // The plain port is had first, then the TLS port is not.
      await assert.rejects(layer({}, 0, port), /EADDRINUSE/);
      assert.equal(servers(), before, 'no listener left open');
    } finally {
      taken.close();
    }
  });

  it("refuses a connection past the protocol's maxClients in its own words, and applies a live change", async () => {
    const l = await layer({ MAILGRID_POP3_MAX_CLIENTS: '3' });
    try {
      const open = await Promise.all([1, 2, 3].map(() => Pop3Transcript.open(l.plain)));
      for (const s of open) await s.expect('+OK hello');
      const fourth = await Pop3Transcript.open(l.plain);
      await fourth.expect('-ERR TOO_MANY_CONNECTIONS');
      await fourth.closed();
      l.access.applySettings({ ...l.cfg, pop3: { ...l.cfg.pop3, maxClients: 4 } });
      const now = await Pop3Transcript.open(l.plain);
      await now.expect('+OK hello');
      for (const s of [...open, now]) s.close();
    } finally {
      await l.access.stop(1_000);
    }
  });

  it('refuses an early talker when the protocol pauses before its greeting', async () => {
    const l = await layer({}, 300);
    try {
      const early = await Pop3Transcript.open(l.plain);
      early.write('TOO SOON\r\n');
      await early.expect('-ERR EARLY_TALKER');
      await early.closed();
      const patient = await Pop3Transcript.open(l.plain);
      await patient.expect('+OK hello');
      patient.close();
    } finally {
      await l.access.stop(1_000);
    }
  });

  it('ends an idle session with the idle reply, and one that sends a line without end past 64 KB', async () => {
    const l = await layer({ IDLE: '300' });
    try {
      const idle = await Pop3Transcript.open(l.plain);
      await idle.expect('+OK hello');
      await idle.expect('-ERR IDLE_TIMEOUT');
      await idle.closed();
      const flood = await Pop3Transcript.open(l.plain);
      await flood.expect('+OK hello');
      flood.write('x'.repeat(70 * 1024));
      await flood.expect('-ERR TOO_MUCH_INPUT');
      await flood.closed();
    } finally {
      await l.access.stop(1_000);
    }
  });

  it('drains: an idle session is told at once, one in a command answers it first, and stop returns', async () => {
    const l = await layer();
    const idle = await Pop3Transcript.open(l.plain);
    await idle.expect('+OK hello');
    const busy = await Pop3Transcript.open(l.plain);
    await busy.expect('+OK hello');
    await busy.send('WAIT 500', '+ waiting');
    const stopped = l.access.stop(10_000);
    await idle.expect('-ERR SHUTTING_DOWN');
    await busy.expect('+OK WAIT 500');
    await busy.expect('-ERR SHUTTING_DOWN');
    await Promise.all([idle.closed(), busy.closed(), stopped]);
    assert.equal(l.access.state, 'stopped');
  });

  it('closes what is left at the drain deadline', async () => {
    const l = await layer();
    const busy = await Pop3Transcript.open(l.plain);
    await busy.expect('+OK hello');
    await busy.send('WAIT 5000', '+ waiting');
    await l.access.stop(200);
    assert.equal(l.access.state, 'stopped');
    // Cut off before its command's answer.
    await busy.expect('-ERR SHUTTING_DOWN');
    await busy.closed();
  });
});
