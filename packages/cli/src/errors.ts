import { CodedError, ConfigError, StartError, type AdminError, type MailError } from '@mailgrid/core';

/** A failure the CLI reports as one clear line and a non-zero exit. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

/**
 * The sentence for a failed call to a mailgrid node, chosen by the error's code (never by
 * matching its text); an admin answer is its own sentence. `where` names what was called,
 * e.g. "the mailgrid node at 127.0.0.1:7525".
 */
export function explain(err: MailError | AdminError, where: string): Error {
  switch (err.code) {
    case 'BACKEND_UNAVAILABLE':
    case 'TIMEOUT':
      return new CliError(`cannot reach ${where}: is it running? (start a single node with: npx mailgrid start)`);
    case 'UNIMPLEMENTED':
      return new CliError(`${where} does not offer this command (is it a cluster member? use --etcd)`);
    case 'ETCD_UNAVAILABLE':
      return new CliError(`cannot reach etcd at ${where}: is the cluster running?`);
    default:
      return err;
  }
}

/** What the process prints for an error that ends a command. */
export function message(err: unknown): string {
  if (err instanceof CliError || err instanceof ConfigError || err instanceof StartError) return err.message;
  if (CodedError.is(err)) return err.text;
  return `unexpected error: ${(err as Error)?.stack ?? err}`;
}
