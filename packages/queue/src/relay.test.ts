import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { foldLongLines, Relay } from './relay.js';

const records: Record<string, { exchange: string; priority: number }[] | string> = {
  'pri.test': [
    { exchange: 'backup.pri.test', priority: 20 },
    { exchange: 'a.pri.test', priority: 10 },
    { exchange: 'b.pri.test', priority: 10 },
  ],
  'nomx.test': 'ENODATA',
  'gone.test': 'ENOTFOUND',
  'broken.test': 'ESERVFAIL',
  'nullmx.test': [{ exchange: '', priority: 0 }],
};
const fakeDns = {
  async resolveMx(domain: string) {
    const r = records[domain];
    if (typeof r === 'string') throw Object.assign(new Error(r), { code: r });
    return r.map((x) => ({ ...x }));
  },
};
const relay = (smarthost = '') =>
  new Relay({ smarthost, heloName: 'mx.test', timeoutMs: 1000, perDestination: 2, log: pino({ level: 'silent' }), dns: fakeDns as never });

describe('Relay: where mail goes', () => {
  it('tries MX hosts by priority, equal priorities in random order', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const hosts = (await relay().exchangers('pri.test')).map((h) => h.host);
      assert.equal(hosts[2], 'backup.pri.test');
      assert.deepEqual(hosts.slice(0, 2).sort(), ['a.pri.test', 'b.pri.test']);
      seen.add(hosts[0]);
    }
    assert.equal(seen.size, 2, 'both equal-priority hosts come first sometimes');
  });

  it('falls back to the domain itself without MX records', async () => {
    assert.deepEqual(await relay().exchangers('nomx.test'), [{ host: 'nomx.test', port: 25 }]);
  });

  const refusals: [string, RegExp][] = [
    ['gone.test', /^550 5\.1\.2/],
    ['nullmx.test', /^556 5\.1\.10/],
    ['broken.test', /^451 4\.4\.3/],
  ];
  for (const [domain, reply] of refusals) {
    it(`answers ${reply.source.slice(1, 4)} for ${domain}`, async () => {
      const err = await relay().exchangers(domain).then(
        () => assert.fail('expected a refusal'),
        (e: { reply: { code: number; enhanced: string } }) => e,
      );
      assert.match(`${err.reply.code} ${err.reply.enhanced}`, reply);
    });
  }

  it('sends everything to the smarthost when one is set', async () => {
    assert.deepEqual(await relay('relay.example.test:2525').exchangers('pri.test'), [{ host: 'relay.example.test', port: 2525 }]);
  });

  it('reports an unreachable exchanger as a temporary failure for every recipient', async () => {
    const res = await relay('127.0.0.1:1').send('x.test', { mailFrom: 'a@b.test', body: Buffer.from('x\r\n') }, [{ address: 'c@x.test' }, { address: 'd@x.test' }]);
    assert.deepEqual(res.map((r) => [r.address, r.delivered, r.reply.code]), [['c@x.test', false, 451], ['d@x.test', false, 451]]);
  });
});

describe('foldLongLines', () => {
  it('leaves a message without long lines as it is', () => {
    const body = Buffer.from('a\r\n' + 'b'.repeat(998) + '\r\n');
    assert.equal(foldLongLines(body), body);
  });
  it('folds a long line into lines of at most 998 octets, continuations starting with a space', () => {
    const body = Buffer.from('Subject: x\r\n\r\n' + 'y'.repeat(2500) + '\r\nend\r\n');
    const folded = foldLongLines(body).toString('latin1');
    const lines = folded.split('\r\n');
    assert.ok(lines.every((l) => l.length <= 998), 'no line over 998');
    assert.deepEqual(lines.slice(2, 5).map((l) => l.length), [998, 998, 506]);
    assert.ok(lines[3].startsWith(' y') && lines[4].startsWith(' y'));
    assert.equal(folded.replace(/\r\n /g, ''), body.toString('latin1'), 'unfolding gives the original back');
  });
});
