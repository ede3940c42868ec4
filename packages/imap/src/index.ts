export type * from './types.js';
export { readCommand, ImapParseError, parseSequenceSet, parseDateTime } from './parser.js';
export type { CommandInput, LiteralContext, ParseOptions, ParseErrorCode } from './parser.js';
export { astring, quoted, nstring, literal, list, flagList, mailboxName, sequenceSet, sequenceSetText, envelope, bodyStructure, dateTime } from './format.js';
export { decodeMailboxName, decodeMailboxPattern, encodeMailboxName, isInbox, MailboxNameError } from './mailbox-name.js';
