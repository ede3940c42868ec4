import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, leaves, loadConfig, withOverrides } from './config.js';

describe('config pipeline', () => {
  it('derives env and flag names from key paths', () => {
    const leaf = leaves().find((l) => l.key === 'smtp.maxMessageBytes')!;
    assert.equal(leaf.env, 'MAILGRID_SMTP_MAX_MESSAGE_BYTES');
    assert.equal(leaf.flag, 'smtp-max-message-bytes');
    assert.equal(leaves().find((l) => l.key === 'etcd')!.env, 'MAILGRID_ETCD');
  });

  it('applies file, then environment, then flags', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'mg-cfg-')), 'c.json');
    writeFileSync(file, JSON.stringify({ smtp: { port: 1000, hostname: 'from-file' }, dataDir: '/file' }));
    const c = loadConfig({ file, env: { MAILGRID_SMTP_PORT: '2000', MAILGRID_DATA_DIR: '/env' }, overrides: { 'smtp.port': '3000' } });
    assert.equal(c.smtp.port, 3000);
    assert.equal(c.dataDir, '/env');
    assert.equal(c.smtp.hostname, 'from-file');
  });

  it('reports every problem with its key path at once', () => {
    assert.throws(
      () => loadConfig({ env: { MAILGRID_SMTP_PORT: '99999', MAILGRID_SMTP_REVERSE_DNS: 'maybe', MAILGRID_BACKEND_GROUP: 'bad group' } }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.problems.length, 3, err.message);
        assert.match(err.message, /smtp\.port/);
        assert.match(err.message, /smtp\.reverseDns: MAILGRID_SMTP_REVERSE_DNS=maybe is not a boolean/);
        assert.match(err.message, /backend\.group/);
        return true;
      },
    );
  });

  it('rejects unknown keys in a file', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'mg-cfg-')), 'c.json');
    writeFileSync(file, JSON.stringify({ smtp: { prot: 25 } }));
    assert.throws(() => loadConfig({ file }), /smtp: Unrecognized key/);
  });

  it('validates live overrides the same way', () => {
    const base = loadConfig();
    assert.equal(withOverrides(base, { 'smtp.maxRecipients': '5' }).smtp.maxRecipients, 5);
    assert.throws(() => withOverrides(base, { 'smtp.maxRecipients': '-1' }), /smtp\.maxRecipients/);
    assert.throws(() => withOverrides(base, { 'smtp.nope': '1' }), /no such setting/);
  });
});
