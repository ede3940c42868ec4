/**
 * The bytes of a message as SMTP carries it: lines end with CRLF, and there is no bare CR,
 * bare LF or NUL (the forms SMTP smuggling uses). Every way in checks it: the SMTP listener
 * chunk by chunk, the Submit service on the whole body.
 */
const CR = 0x0d;
const LF = 0x0a;

/**
 * Offset of the first NUL, bare CR or bare LF in `chunk`, or -1. `prev` is the byte before
 * the chunk (LF at the start of the message). A CR as the very last byte is judged when
 * the next chunk arrives; smtp-server's data always ends with CRLF.
 */
export function findBadByte(chunk: Buffer, prev: number): number {
  const nul = chunk.indexOf(0);
  let bad = nul;
  for (let i = chunk.indexOf(LF); i >= 0 && (bad < 0 || i < bad); i = chunk.indexOf(LF, i + 1)) {
    if ((i === 0 ? prev : chunk[i - 1]) !== CR) {
      bad = i;
      break;
    }
  }
  if (prev === CR && chunk.length && chunk[0] !== LF) return 0;
  for (let i = chunk.indexOf(CR); i >= 0 && (bad < 0 || i < bad); i = chunk.indexOf(CR, i + 1)) {
    if (i + 1 < chunk.length && chunk[i + 1] !== LF) {
      bad = i;
      break;
    }
  }
  return bad;
}

/** Offset of the first NUL, bare CR or bare LF in a whole message, or -1 (a CR as its last byte is bare). */
export function badByteIn(body: Buffer): number {
  const bad = findBadByte(body, LF);
  if (bad >= 0) return bad;
  return body.length && body[body.length - 1] === CR ? body.length - 1 : -1;
}
