// Generates TypeScript types for proto/ with the same options the runtime loader uses
// (loader-options.json), so the types always describe what loadSync returns.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const protoRoot = join(here, '..', '..', '..', 'proto');
const outDir = join(here, '..', 'src', 'generated');
const options = JSON.parse(readFileSync(join(here, '..', 'loader-options.json'), 'utf8'));

const flags = [];
for (const [key, value] of Object.entries(options)) {
  if (value === true) flags.push(`--${key}`);
  else if (value === false) continue;
  else flags.push(`--${key}=${value}`);
}

const files = readdirSync(join(protoRoot, 'mailgrid', 'v1'))
  .filter((f) => f.endsWith('.proto'))
  .map((f) => join('mailgrid', 'v1', f));

const require = createRequire(import.meta.url);
const bin = join(dirname(require.resolve('@grpc/proto-loader/package.json')), 'build', 'bin', 'proto-loader-gen-types.js');

rmSync(outDir, { recursive: true, force: true });
execFileSync(process.execPath, [
  bin, ...flags,
  '--grpcLib=@grpc/grpc-js',
  '--importFileExtension=.js',
  '-I', protoRoot,
  '-O', outDir,
  ...files,
], { stdio: 'inherit' });
