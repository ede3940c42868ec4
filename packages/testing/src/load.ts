/**
 * A message of about `size` bytes for load tests: the given headers, then 78-byte lines of
 * filler, CRLF throughout and ending in CRLF (the DATA terminator is the sender's).
 */
export function fillerMessage(size: number, headers: string): string {
  const line = 'x'.repeat(76) + '\r\n';
  let m = `${headers}\r\n\r\n`;
  while (m.length + line.length <= size) m += line;
  return m + 'y'.repeat(Math.max(0, size - m.length - 2)) + '\r\n';
}
