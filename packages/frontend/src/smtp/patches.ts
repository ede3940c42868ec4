import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { metrics, Replies } from '@mailgrid/core';

const TLS_REQUIRED = Replies.tlsRequired().reply;

/**
 * What smtp-server 3.21.6 (pinned exactly in package.json) cannot be told by an option.
 * The access layer hands it connections already accepted (PROXY header read from the
 * balancers only, implicit TLS done, the connection cap and the greeting pause applied), so
 * what is left here is the library's own protocol behaviour:
 *
 * 1. No pause of its own. `SMTPConnection#init` waits a hard-coded 100 ms before the
 *    greeting to catch early talkers, and checks `maxClients`: the layer does both, per
 *    protocol and with settings (`smtp.greetingDelayMs`, `listen.maxClients`), so init goes
 *    straight to the greeting. At 100 ms the pause alone capped one-message sessions near
 *    320 msgs/s with 32 clients.
 * 2. Enhanced codes. smtp-server derives the enhanced code of an error reply from its
 *    basic code alone (every 554 becomes 5.6.0); our replies carry their own
 *    ("554 5.7.1 ..."), so a text that starts with one is sent as it is.
 * 3. The address as written. smtp-server turns `xn--` A-labels into Unicode, after which an
 *    ASCII address a client wrote looks like a UTF-8 one; `written(address)` gives what the
 *    client sent, so SMTPUTF8 is required only for what really is UTF-8.
 * 4. No AUTH before TLS. smtp-server offers AUTH in EHLO on a plain connection and answers
 *    AUTH there with a non-standard 538; we offer it only once the connection is secure
 *    and answer `530 5.7.0` (RFC 3207, RFC 4954).
 * 5. Reply counts. Every reply `send` writes is counted by class for /metrics, with the
 *    listener named by our server option `listener` (its own 5xx for a bad command included:
 *    no hook sees those).
 *
 * Each is checked against the library's source at load time so an upgrade that changes
 * them fails loudly instead of silently losing the patch.
 */
const proto = SMTPConnection.prototype as any;

const originalInit: Function = proto.init;
if (!/setTimeout\(\(\) => this\.connectionReady\(\), 100\)/.test(originalInit.toString()) || typeof proto._setListeners !== 'function') {
  throw new Error('smtp-server changed SMTPConnection#init; review packages/frontend/src/smtp/patches.ts');
}
proto.init = function init(this: any) {
  this._setListeners(() => this.connectionReady());
};

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;
const originalSend: Function = proto.send;
if (originalSend.length !== 3) throw new Error('smtp-server changed SMTPConnection#send; review smtp/patches.ts');
proto.send = function send(this: { secure?: boolean; _server?: { options?: { listener?: string } } }, code: number, data: unknown, context?: unknown) {
  metrics.countReply(this._server?.options?.listener ?? 'smtp', code === 538 ? TLS_REQUIRED.code : code);
  if (code === 538) return originalSend.call(this, TLS_REQUIRED.code, `${TLS_REQUIRED.enhanced} ${TLS_REQUIRED.text}`, false);
  if (code === 250 && Array.isArray(data) && !this.secure) data = data.filter((line) => !/^AUTH\b/i.test(String(line)));
  if (typeof data === 'string' && ENHANCED.test(data)) return originalSend.call(this, code, data, false);
  return originalSend.call(this, code, data, context);
};

const originalParse: Function = proto._parseAddressCommand;
if (typeof originalParse !== 'function' || originalParse.length !== 2) throw new Error('smtp-server changed SMTPConnection#_parseAddressCommand; review smtp/patches.ts');
proto._parseAddressCommand = function parseAddressCommand(this: unknown, name: unknown, command: unknown) {
  const parsed = originalParse.call(this, name, command);
  if (parsed) parsed.written = /<([^<>]*)>/.exec(String(command))?.[1] ?? parsed.address;
  return parsed;
};

/** The address of a MAIL or RCPT command as the client wrote it (before smtp-server's Unicode conversion). */
export function written(address: { address: string }): string {
  return (address as { written?: string }).written ?? address.address;
}
