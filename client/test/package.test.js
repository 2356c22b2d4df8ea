// The package's parts agree: what the module exports is what the
// declarations declare and what the classic build defines, the version is
// package.json's, and package.json names files that exist.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import * as client from "../pubsub.js";

const dir = fileURLToPath(new URL("..", import.meta.url));
const read = (name) => readFileSync(dir + name, "utf8");
const pkg = JSON.parse(read("package.json"));

test("the declarations declare exactly what the module exports", () => {
  const declared = [...read("pubsub.d.ts").matchAll(/^export declare (?:const|function) (\w+)/gm)].map((m) => m[1]);
  assert.deepEqual(declared.sort(), Object.keys(client).sort());
});

test("the classic build defines the global PubSub with the module's exports", () => {
  const context = vm.createContext({ URL, setTimeout, clearTimeout });
  vm.runInContext(read("pubsub.global.js"), context, { filename: "pubsub.global.js" });
  const global = context.PubSub;
  assert.ok(global, "no global PubSub");
  assert.deepEqual(Object.keys(global).sort(), Object.keys(client).sort());
  assert.equal(global.VERSION, client.VERSION);
  assert.equal(typeof global.connect, "function");
});

test("VERSION is package.json's version", () => {
  assert.equal(client.VERSION, pkg.version);
});

test("the package carries the repository's licence", () => {
  assert.equal(read("LICENSE"), readFileSync(dir + "../LICENSE", "utf8"));
});

test("package.json is ready to publish", () => {
  assert.equal(pkg.name, "@caddy-pubsub/client");
  assert.equal(pkg.license, "Apache-2.0");
  assert.equal(pkg.type, "module");
  assert.match(pkg.version, /^\d+\.\d+\.\d+$/);
  const targets = [pkg.main, pkg.types, pkg.exports["."].import, pkg.exports["."].types, pkg.exports["./global"]];
  for (const f of [...targets, ...pkg.files]) {
    assert.ok(existsSync(dir + f), f + " does not exist");
  }
  for (const f of targets) {
    assert.ok(pkg.files.includes(f.replace(/^\.\//, "")), f + " is not in files");
  }
});
