#!/usr/bin/env node
// Committed launcher, so npm can link the command before the first build.
import "../dist/main.js";
