#!/usr/bin/env node
// Committed launcher, so npm can link the command before the first build.
// mailgrid runs on Node 24 LTS: `npm install` puts one in node_modules/.bin (the `node`
// package), which `npx mailgrid` and every npm script find first on the PATH.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`mailgrid: needs Node.js 24 or newer, this is ${process.version} (${process.execPath}); run it as \`npx mailgrid\` in the checkout, which uses the Node 24 that npm install put in node_modules/.bin\n`);
  process.exit(1);
}
await import('../dist/main.js');
