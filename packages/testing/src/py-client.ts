import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './node-process.js';

const CLIENT = join(repoRoot, 'test', 'clients', 'mail_client.py');

/** One named step of the Python client: `['login', 'user', 'alice@example.test']`. */
export type PyStep = [name: string, step: string, ...args: (string | number)[]];

/**
 * A step's result as test/clients/mail_client.py gives it: a reply text, a list (UIDL,
 * CAPA), `[code, text]` (SMTP), or `{ error }` when the step failed (the rest still run).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type PyResult = any;

/**
 * Runs steps through Python's poplib and smtplib, clients independent of ours, and gives
 * each step's result by its name, so a test reads `r.login` rather than `r[4]`.
 */
export function pyClient<N extends string>(steps: [N, string, ...(string | number)[]][], timeoutMs = 150_000): Promise<Record<N, PyResult>> {
  const names = steps.map((s) => s[0]);
  if (new Set(names).size !== names.length) throw new Error(`step names must differ: ${names.join(', ')}`);
  return new Promise((resolve, reject) =>
    execFile('python3', [CLIENT, JSON.stringify(steps.map(([, ...step]) => step))], { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${err.message}\n${stderr}`));
      const results = JSON.parse(stdout) as PyResult[];
      resolve(Object.fromEntries(names.map((n, i) => [n, results[i]])) as Record<N, PyResult>);
    }),
  );
}
