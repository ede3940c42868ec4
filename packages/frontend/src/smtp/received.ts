import { rfc5322Date } from '@mailgrid/core';
export interface ReceivedInfo {
  helo: string;
  clientHostname: string;
  clientAddress: string;
  byHost: string;
  protocol: 'SMTP' | 'ESMTP' | 'ESMTPS' | 'ESMTPA' | 'ESMTPSA';
  id: string;
  /** Only named for a single recipient (RFC 5321 §4.4 privacy note). */
  forRecipient?: string;
  date: Date;
}

/** The trace header the frontend prepends, folded onto continuation lines. */
export function receivedHeader(r: ReceivedInfo): string {
  const from = r.clientHostname && r.clientHostname !== `[${r.clientAddress}]`
    ? `${r.helo} (${r.clientHostname} [${r.clientAddress}])`
    : `${r.helo} ([${r.clientAddress}])`;
  const forPart = r.forRecipient ? `\r\n\tfor <${r.forRecipient}>` : '';
  return `Received: from ${from}\r\n\tby ${r.byHost} (mailgrid) with ${r.protocol} id ${r.id}${forPart};\r\n\t${rfc5322Date(r.date)}\r\n`;
}
