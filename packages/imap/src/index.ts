export type * from './types.js';
export { readCommand, ImapParseError, parseSequenceSet, parseDateTime } from './parser.js';
export type { CommandInput, LiteralContext, ParseOptions, ParseErrorCode } from './parser.js';
export { decodeMailboxName, decodeMailboxPattern, encodeMailboxName, isInbox, MailboxNameError } from './mailbox-name.js';
