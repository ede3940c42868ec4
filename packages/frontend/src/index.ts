export * from './build.js';
export { SmtpProtocol } from './smtp/protocol.js';
