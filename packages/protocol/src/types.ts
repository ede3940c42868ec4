// Generated types under the names the rest of mailgrid uses.
export type { DeliveryClient, DeliveryHandlers } from './generated/mailgrid/v1/Delivery.js';
export type { MailboxClient, MailboxHandlers } from './generated/mailgrid/v1/Mailbox.js';
export type { AdminClient, AdminHandlers } from './generated/mailgrid/v1/Admin.js';
export type { DeliverRequest, DeliverRequest__Output } from './generated/mailgrid/v1/DeliverRequest.js';
export type { DeliverResponse, DeliverResponse__Output } from './generated/mailgrid/v1/DeliverResponse.js';
export type { Envelope, Envelope__Output } from './generated/mailgrid/v1/Envelope.js';
export type { DeliveryRecipient, DeliveryRecipient__Output } from './generated/mailgrid/v1/DeliveryRecipient.js';
export type { RecipientResult, RecipientResult__Output } from './generated/mailgrid/v1/RecipientResult.js';
export type { Outcome, Outcome__Output } from './generated/mailgrid/v1/Outcome.js';
export type { MessageInfo, MessageInfo__Output } from './generated/mailgrid/v1/MessageInfo.js';
export type { FetchChunk__Output } from './generated/mailgrid/v1/FetchChunk.js';
export type { Account__Output } from './generated/mailgrid/v1/Account.js';
export type { QueueClient, QueueHandlers } from './generated/mailgrid/v1/Queue.js';
export type { QueuedMessageInfo, QueuedMessageInfo__Output } from './generated/mailgrid/v1/QueuedMessageInfo.js';
export type { QueueListResponse, QueueListResponse__Output } from './generated/mailgrid/v1/QueueListResponse.js';
