import type { BlockList } from 'node:net';
import type { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { inNetworks, metrics, Replies } from '@mailgrid/core';

const TLS_REQUIRED = Replies.tlsRequired().reply;

/**
 * Small, documented patches to smtp-server 3.21.6 (pinned exactly in package.json):
 *
 * 1. Greeting delay. `SMTPConnection#init` waits a hard-coded 100 ms before the greeting
 *    to catch early talkers; with one message per connection that alone caps 32 sessions at
 *    ~320 msgs/s. We read the delay from the server option `greetingDelay` instead.
 * 2. Enhanced codes. smtp-server derives the enhanced code of an error reply from its
 *    basic code alone (every 554 becomes 5.6.0); our replies carry their own
 *    ("554 5.7.1 ..."), so a text that starts with one is sent as it is.
 *
 * 3. PROXY peers (`acceptProxyFrom`, per server): smtp-server's `useProxy` takes exact
 *    addresses only; the balancers are given as addresses or CIDR blocks.
 * 4. The address as written. smtp-server turns `xn--` A-labels into Unicode, after which an
 *    ASCII address a client wrote looks like a UTF-8 one; `written(address)` gives what the
 *    client sent, so SMTPUTF8 is required only for what really is UTF-8.
 *
 * 5. No AUTH before TLS. smtp-server offers AUTH in EHLO on a plain connection and answers
 *    AUTH there with a non-standard 538; we offer it only once the connection is secure
 *    and answer `530 5.7.0` (RFC 3207, RFC 4954).
 * 6. Reply counts. Every reply `send` writes is counted by class for /metrics, with the
 *    listener named by our server option `listener`.
 *
 * Each is checked against the library's source at load time so an upgrade that changes
 * them fails loudly instead of silently losing the patch.
 */
const proto = SMTPConnection.prototype as any;

const originalInit: Function = proto.init;
if (!/setTimeout\(\(\) => this\.connectionReady\(\), 100\)/.test(originalInit.toString())) {
  throw new Error('smtp-server changed SMTPConnection#init; review packages/frontend/src/smtp-patches.ts');
}
proto.init = function init(this: any) {
  this._setListeners(() => {
    const options = this._server.options;
    if (options.maxClients && this._server.connections.size > options.maxClients) {
      return this.send(421, this.name + ' Too many connected clients, try again in a moment', false);
    }
    setTimeout(() => this.connectionReady(), options.greetingDelay ?? 100).unref();
  });
};

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;
const originalSend: Function = proto.send;
if (originalSend.length !== 3) throw new Error('smtp-server changed SMTPConnection#send; review smtp-patches.ts');
// Every reply is counted by class here, where smtp-server sends it (its own 5xx included); `listener` is our server option.
proto.send = function send(this: { secure?: boolean; _server?: { options?: { listener?: string } } }, code: number, data: unknown, context?: unknown) {
  metrics.countReply(this._server?.options?.listener ?? 'mx', code === 538 ? TLS_REQUIRED.code : code);
  if (code === 538) return originalSend.call(this, TLS_REQUIRED.code, `${TLS_REQUIRED.enhanced} ${TLS_REQUIRED.text}`, false);
  if (code === 250 && Array.isArray(data) && !this.secure) data = data.filter((line) => !/^AUTH\b/i.test(String(line)));
  if (typeof data === 'string' && ENHANCED.test(data)) return originalSend.call(this, code, data, false);
  return originalSend.call(this, code, data, context);
};

/**
 * Only a connection from one of `balancers` starts with a PROXY header (and must). Anyone
 * else's first line is an SMTP command like any other, so a client that connects straight
 * to a frontend cannot claim a trusted address: its "PROXY ..." line is an unknown command
 * and its real address is the one that counts.
 */
export function acceptProxyFrom(server: SMTPServer, balancers: BlockList): void {
  const s = server as unknown as { _expectsProxyHeader?: (socket: { remoteAddress?: string }) => boolean; options: { useProxy?: unknown } };
  if (typeof s._expectsProxyHeader !== 'function') throw new Error('smtp-server changed SMTPServer#_expectsProxyHeader; review smtp-patches.ts');
  s.options.useProxy = true;
  s._expectsProxyHeader = (socket) => inNetworks(balancers, socket.remoteAddress ?? '');
}

const originalParse: Function = proto._parseAddressCommand;
if (typeof originalParse !== 'function' || originalParse.length !== 2) throw new Error('smtp-server changed SMTPConnection#_parseAddressCommand; review smtp-patches.ts');
proto._parseAddressCommand = function parseAddressCommand(this: unknown, name: unknown, command: unknown) {
  const parsed = originalParse.call(this, name, command);
  if (parsed) parsed.written = /<([^<>]*)>/.exec(String(command))?.[1] ?? parsed.address;
  return parsed;
};

/** The address of a MAIL or RCPT command as the client wrote it (before smtp-server's Unicode conversion). */
export function written(address: { address: string }): string {
  return (address as { written?: string }).written ?? address.address;
}
