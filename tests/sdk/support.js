// Helpers shared by the capability-sdk tests (sdk_e2e.test.js, sdk_tutorial.test.js): SDK call
// wrappers, a throwaway PKI, and starting and stopping processes, membraned among them.
//
// Needs: MEMBRANED_BINARY (path of the membraned executable) for startServer, the `openssl` CLI.
"use strict";

const assert = require("node:assert/strict");
const childProcess = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const BINARY = process.env.MEMBRANED_BINARY;
const START_TIMEOUT_MS = 20000;
const STOP_TIMEOUT_MS = 20000;

const CAPABILITY_URI = /^cpblty:\/\/([^/]+)\/#(CPBLTY1-[-_A-Za-z0-9]{86})$/;

// Asserts that `uri` is a capability URI (message `what` if not) served by `authority`.
const assertCapabilityOf = (uri, authority, what = uri) =>
{
    const m = CAPABILITY_URI.exec(uri);
    assert.ok(m, what);
    assert.equal(m[1], authority);
};

// The body of the AWS Lambda tutorial's export (docs/tutorial.md): a RequestResponse invocation
// of `uri`, signed with aws4-hmac-sha256 for lambda in us-east-1 with the given key.
const lambdaExportBody = ({ uri, awsAccessKeyId, secretAccessKey }) =>
({
    uri,
    method: "POST",
    allowQuery: false,
    headers:
    {
        "X-Amz-Invocation-Type": "RequestResponse",
        "X-Amz-Log-Type": "None"
    },
    hmac:
    {
        "aws4-hmac-sha256":
        {
            awsAccessKeyId,
            region: "us-east-1",
            service: "lambda",
            secretAccessKey
        }
    }
});

// Runs one SDK call `fn(...args, callback)` and resolves with {error, response}; never rejects,
// so each test asserts on exactly what the SDK handed to its callback.
const sdk = (fn, ...args) => new Promise(resolve =>
    fn(...args, (error, response) => resolve({ error, response })));

// Asserts that an SDK call succeeded and returns its response.
const ok = ({ error, response }, what) =>
{
    assert.equal(error, undefined, `${what}: the SDK reported an error: ${JSON.stringify(error)}`);
    return response;
};

const openssl = (cwd, ...args) =>
    childProcess.execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"] });

// A throwaway CA (common name `caName`) and a server certificate for 127.0.0.1 and localhost,
// signed by it, written into `dir`.
const makePki = (dir, caName) =>
{
    openssl(dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", `/CN=${caName}`,
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign");
    openssl(dir, "req", "-newkey", "rsa:2048", "-nodes", "-sha256",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost");
    fs.writeFileSync(path.join(dir, "server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n" +
        "basicConstraints=critical,CA:FALSE\n" +
        "keyUsage=critical,digitalSignature,keyEncipherment\n" +
        "extendedKeyUsage=serverAuth\n");
    openssl(dir, "x509", "-req", "-sha256", "-days", "2", "-in", "server.csr",
        "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-extfile", "server.ext");
    return {
        caPem: fs.readFileSync(path.join(dir, "ca.pem"), "utf8"),
        cert: path.join(dir, "server.pem"),
        key: path.join(dir, "server.key")
    };
};

// Spawns `command args`, collects its output into `holder.output`, and resolves with the first
// match of `pattern` in it (rejecting on timeout or early exit). Sets `holder.process` and
// `holder.exit` (a Promise of {code, signal}).
const spawnAndWaitFor = (holder, command, args, options, pattern, what) =>
{
    const child = childProcess.spawn(command, args, Object.assign({ stdio: [ "ignore", "pipe", "pipe" ] }, options));
    holder.process = child;
    holder.output = "";
    holder.exit = new Promise(resolve => child.on("exit", (code, signal) => resolve({ code, signal })));
    return new Promise((resolve, reject) =>
    {
        let done = false;
        const finish = (fn, value) => { if (!done) { done = true; clearTimeout(timer); fn(value); } };
        const timer = setTimeout(() =>
            finish(reject, new Error(`${what} did not start in ${START_TIMEOUT_MS} ms:\n${holder.output}`)),
            START_TIMEOUT_MS);
        const onData = chunk =>
        {
            holder.output += chunk.toString("utf8");
            const m = pattern.exec(holder.output);
            if (m) finish(resolve, m);
        };
        child.stdout.on("data", onData);
        child.stderr.on("data", onData);
        child.on("error", error => finish(reject, error));
        child.on("exit", (code, signal) =>
            finish(reject, new Error(`${what} exited early (code ${code}, signal ${signal}):\n${holder.output}`)));
    });
};

// SIGTERM, then wait for the exit (SIGKILL after a timeout); returns {code, signal}, or undefined
// when nothing was started.
const stopProcess = async holder =>
{
    const child = holder.process;
    if (!child) return undefined;
    if (child.exitCode !== null || child.signalCode !== null) return holder.exit;
    child.kill("SIGTERM");
    let timer;
    const result = await Promise.race([
        holder.exit,
        new Promise(resolve => { timer = setTimeout(() => resolve(undefined), STOP_TIMEOUT_MS); })
    ]);
    clearTimeout(timer);
    if (result === undefined)
    {
        child.kill("SIGKILL");
        await holder.exit;
        return { code: null, signal: "SIGTERM timed out" };
    }
    return result;
};

// A holder for one membraned, filled in by startServer.
const newServer = () =>
({
    process: undefined,
    exit: undefined,        // Promise of {code, signal}
    output: "",             // stdout and stderr, for diagnostics
    authority: undefined,
    tenant: undefined,      // first-tenant.json
    tmp: undefined,         // the temporary folder (PKI and data dir); the caller removes it
    caPem: undefined
});

// Starts MEMBRANED_BINARY over HTTPS on 127.0.0.1 (a free port) with a fresh data dir and PKI in a
// temporary folder named `${tmpPrefix}XXXXXX`, the CA named `caName`; fills in `server`.
const startServer = async (server, { tmpPrefix, caName }) =>
{
    assert.ok(BINARY, "set MEMBRANED_BINARY to the membraned executable");
    assert.ok(fs.existsSync(BINARY), `MEMBRANED_BINARY=${BINARY} does not exist`);
    server.tmp = fs.mkdtempSync(path.join(os.tmpdir(), tmpPrefix));
    const pki = makePki(server.tmp, caName);
    server.caPem = pki.caPem;
    const dataDir = path.join(server.tmp, "data");
    fs.mkdirSync(dataDir);

    const env = Object.assign({}, process.env);
    for (const name of Object.keys(env))
    {
        if (name.startsWith("MEMBRANED_")) delete env[name]; // the flags below decide
    }
    const m = await spawnAndWaitFor(server, BINARY,
        [ "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir,
          "--tls-cert", pki.cert, "--tls-key", pki.key,
          "--allow-upstream", "127.0.0.0/8" ],  // the fakes are on loopback (contract §10)
        { env }, /listening on https:\/\/(\S+) \(authority (\S+)\)/, "membraned");
    server.authority = m[2];
    assert.match(server.authority, /^127\.0\.0\.1:[1-9][0-9]*$/);
    server.tenant = JSON.parse(fs.readFileSync(path.join(dataDir, "first-tenant.json"), "utf8"));
};

module.exports =
{
    START_TIMEOUT_MS,
    STOP_TIMEOUT_MS,
    CAPABILITY_URI,
    assertCapabilityOf,
    lambdaExportBody,
    sdk,
    ok,
    openssl,
    makePki,
    spawnAndWaitFor,
    stopProcess,
    newServer,
    startServer
};
