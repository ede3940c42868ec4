/**
 * What a session says it can do, by state (RFC 9051 §7.2.2): before TLS on the plain port
 * only STARTTLS and LOGINDISABLED for logins; SASL mechanisms once the channel is private;
 * the extensions once logged in.
 */
const ALWAYS = ['IMAP4rev1', 'IMAP4rev2', 'LITERAL+', 'SASL-IR', 'ID', 'ENABLE', 'IDLE'];

function extensions(appendLimit: number): string[] {
  return [
    'NAMESPACE',
    'UNSELECT',
    'CHILDREN',
    'UIDPLUS',
    'MOVE',
    'MULTIAPPEND',
    `APPENDLIMIT=${appendLimit}`,
    'SPECIAL-USE',
    'CREATE-SPECIAL-USE',
    'LIST-EXTENDED',
    'LIST-STATUS',
    'STATUS=SIZE',
    'ESEARCH',
    'SEARCHRES',
    'WITHIN',
    'SORT',
    'SORT=DISPLAY',
    'THREAD=REFERENCES',
    'THREAD=ORDEREDSUBJECT',
    'CONDSTORE',
    'QRESYNC',
    'OBJECTID',
    'BINARY',
    'QUOTA',
    'QUOTA=RES-STORAGE',
    'UTF8=ACCEPT',
  ];
}

export function capabilities(state: { secure: boolean; authenticated: boolean; compressed: boolean; appendLimit: number }): string {
  const caps = [...ALWAYS];
  if (!state.authenticated) caps.push(...(state.secure ? ['AUTH=PLAIN', 'AUTH=LOGIN'] : ['STARTTLS', 'LOGINDISABLED']));
  else caps.push(...extensions(state.appendLimit));
  // Offered until it is on (RFC 4978: once is all).
  if (!state.compressed) caps.push('COMPRESS=DEFLATE');
  return caps.join(' ');
}

/** ENABLE's extensions (RFC 5161), upper-cased as they are kept. */
export const ENABLEABLE = new Set(['CONDSTORE', 'QRESYNC', 'IMAP4REV2', 'UTF8=ACCEPT']);
