// The AWS Lambda tutorial (the hosted service's, its capability-sdk-js tabs; docs/tutorial.md),
// walked with ONLY the ORIGINAL Node SDK `capability-sdk` 0.12.2 against the real membraned over
// HTTPS (contract §4-7):
// Membrane.create, Membrane.export of the tutorial's body, `CapabilitySDK.request(capabilityUri,
// options)` to invoke, re-exports through two more membranes, and Membrane.revoke.
//
// The upstream is a local stand-in for Lambda's Invoke API (../integration/fake_aws.py) that checks
// every SigV4 signature with botocore, an implementation independent of membraned's, and answers
// 200 {"function": NAME, "event": <the JSON body>} only when it verifies (403 otherwise).
//
// Needs: MEMBRANED_BINARY (path of the membraned executable), the `openssl` CLI, and a Python with
// botocore (FAKE_AWS_PYTHON, default /usr/bin/python3). Nothing leaves the machine: the server and
// the fake listen on 127.0.0.1.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");

const CapabilitySDK = require("capability-sdk");

const { CAPABILITY_URI, assertCapabilityOf, lambdaExportBody, sdk, ok, spawnAndWaitFor, stopProcess, newServer, startServer } = require("./support");

const FAKE_AWS_PYTHON = process.env.FAKE_AWS_PYTHON || "/usr/bin/python3";
const FAKE_AWS_SCRIPT = path.join(__dirname, "..", "integration", "fake_aws.py");
const INVOKE_TIMEOUT_MS = 30000;

const ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE";
const SECRET = crypto.randomBytes(30).toString("base64");        // only the fake and the export know it
const WRONG_SECRET = crypto.randomBytes(30).toString("base64");
const FUNCTION_NAME = "my-function";
const SIGNATURE_MISMATCH = "The request signature we calculated does not match the signature you provided.";

// ---------------------------------------------------------------------------------------------
// the fake Lambda and the server

const fake = { process: undefined, exit: undefined, output: "", port: undefined };

const startFake = async () =>
{
    assert.ok(fs.existsSync(FAKE_AWS_SCRIPT), `${FAKE_AWS_SCRIPT} does not exist`);
    const m = await spawnAndWaitFor(fake, FAKE_AWS_PYTHON,
        [ FAKE_AWS_SCRIPT, "--access-key", ACCESS_KEY, "--secret", SECRET ],
        { cwd: path.dirname(FAKE_AWS_SCRIPT) }, /^PORT ([0-9]+)$/m, "fake_aws.py");
    fake.port = Number(m[1]);
};

const server = newServer();

// ---------------------------------------------------------------------------------------------
// invoking with CapabilitySDK.request, as the tutorial's capability-sdk-js tab does

// `CapabilitySDK.request(capability, options)` hands `options` to https.request (and to the
// https.Agent it makes), overriding hostname, port and authorization from the capability. The
// tutorial runs against a publicly trusted certificate; here the test CA is given as `ca`, the
// same option Membrane passes for its `tls.trustedCA` entry.
//
// `body` (a string) is written unless undefined; `contentLength: false` leaves Content-Length out,
// so Node sends the body chunked. Resolves with {statusCode, headers, text, json}.
const invoke = (capability, { method, path: requestPath, headers = {}, body, contentLength = true } = {}) =>
    new Promise((resolve, reject) =>
    {
        const options = { ca: server.caPem, headers: Object.assign({}, headers) };
        if (method) options.method = method;
        if (requestPath) options.path = requestPath;
        if (body !== undefined && contentLength) options.headers["content-length"] = Buffer.byteLength(body);
        const req = CapabilitySDK.request(capability, options);
        req.setTimeout(INVOKE_TIMEOUT_MS, () => req.destroy(new Error("invocation timed out")));
        req.on("response", resp =>
        {
            const chunks = [];
            resp.on("data", chunk => chunks.push(chunk));
            resp.on("error", reject);
            resp.on("end", () =>
            {
                const text = Buffer.concat(chunks).toString("utf8");
                let json;
                try { json = text.length > 0 ? JSON.parse(text) : undefined; }
                catch (e) { json = undefined; }
                resolve({ statusCode: resp.statusCode, headers: resp.headers, text, json });
            });
        });
        req.on("error", reject);
        if (body !== undefined) req.write(body);
        req.end();
    });

// The fake Lambda's answer to a verified RequestResponse invocation.
const assertLambdaAnswer = (answer, event, what) =>
{
    assert.equal(answer.statusCode, 200, `${what}: ${answer.statusCode} ${answer.text}`);
    assert.match(String(answer.headers["content-type"]), /^application\/json/, what);
    assert.equal(answer.headers["x-amz-executed-version"], "$LATEST", `${what}: upstream headers relayed`);
    assert.deepEqual(answer.json, { function: FUNCTION_NAME, event }, `${what}: ${answer.text}`);
};

// membraned's own 401 (contract §3).
const assertUnauthorized = (answer, what) =>
{
    assert.equal(answer.statusCode, 401, `${what}: ${answer.statusCode} ${answer.text}`);
    assert.ok(answer.json, `${what}: not JSON: ${answer.text}`);
    assert.equal(answer.json.statusCode, 401, `${what}: ${answer.text}`);
    assert.equal(answer.json.error, "Unauthorized", `${what}: ${answer.text}`);
    assert.equal(typeof answer.json.message, "string", `${what}: ${answer.text}`);
};

// ---------------------------------------------------------------------------------------------
// the test

describe("the Lambda tutorial with capability-sdk 0.12.2 against membraned and a botocore-verified fake Lambda",
    { timeout: 180000 }, () =>
{
    let membrane;       // the SDK's Membrane service, trusting the test CA for the authority
    let lambdaExport;   // the tutorial's export body, pointed at the fake
    let root;           // "my-aws-lambda-membrane": exports the Lambda capability
    let delegateB;      // re-exports the Lambda capability
    let delegateC;      // re-exports B's re-export
    let lambda;         // the Lambda capability exported through root
    let viaB;           // lambda re-exported through B
    let viaC;           // viaB re-exported through C
    let wrongSecret;    // a Lambda capability signed with a secret the fake does not know
    const EVENT = { key1: "value1", key2: [ 2, true, null ], "ünï": "名前 🦀" };

    before(async () =>
    {
        await startFake();
        await startServer(server, { tmpPrefix: "membraned-sdk-tutorial-", caName: "membraned sdk tutorial test CA" });
        membrane = new CapabilitySDK.Membrane(
            { tls: { trustedCA: { [server.authority]: server.caPem } } });
        lambdaExport = lambdaExportBody(
        {
            uri: `http://127.0.0.1:${fake.port}/2015-03-31/functions/${FUNCTION_NAME}/invocations`,
            awsAccessKeyId: ACCESS_KEY,
            secretAccessKey: SECRET
        });
    });

    after(async () =>
    {
        // Normally the last test has stopped the server already; this covers failures before that.
        await stopProcess(server);
        await stopProcess(fake);
        if (server.tmp) fs.rmSync(server.tmp, { recursive: true, force: true });
    });

    it("the fake Lambda itself refuses an unsigned invocation (403)", async () =>
    {
        const resp = await fetch(lambdaExport.uri, { method: "POST", body: JSON.stringify(EVENT) });
        assert.equal(resp.status, 403);
        assert.equal(resp.headers.get("x-amzn-errortype"), "InvalidSignatureException");
    });

    it("creates the membrane with Membrane.create", async () =>
    {
        const create = id => sdk(membrane.create.bind(membrane), server.tenant.capabilities.create, { id });
        root = ok(await create("my-aws-lambda-membrane"), "create my-aws-lambda-membrane");
        assert.equal(root.id, "my-aws-lambda-membrane");
        for (const uri of Object.values(root.capabilities))
        {
            assertCapabilityOf(uri, server.authority);
        }
        delegateB = ok(await create("delegate B"), "create delegate B");
        delegateC = ok(await create("delegate C"), "create delegate C");
    });

    it("exports the tutorial's Lambda capability with Membrane.export", async () =>
    {
        const resp = ok(await sdk(membrane.export.bind(membrane), root.capabilities.export, lambdaExport),
            "export lambda");
        assert.deepEqual(Object.keys(resp).sort(), [ "capability", "id", "revoke" ]);  // contract §12
        assertCapabilityOf(resp.capability, server.authority);
        assert.ok(!JSON.stringify(resp).includes(SECRET));
        lambda = resp.capability;
    });

    it("CapabilitySDK.request invokes the function: 200 and the fake's answer echoing the JSON body", async () =>
    {
        const body = JSON.stringify(EVENT);
        assertLambdaAnswer(await invoke(lambda, { method: "POST", body,
            headers: { "content-type": "application/json" } }), EVENT, "POST with a JSON body");
        // Again, over a fresh connection: the signature is fresh each time.
        assertLambdaAnswer(await invoke(lambda, { method: "POST", body }), EVENT, "the same body again");
    });

    it("the request exactly as the tutorial writes it (GET, no body) is sent as the export's POST", async () =>
    {
        // The tutorial's tab: CapabilitySDK.request(uri) then req.end(); only the CA is added here.
        // The export's method POST overrides GET; the empty body reaches Lambda as no event.
        assertLambdaAnswer(await invoke(lambda), null, "GET without body");
    });

    it("a chunked request body (no Content-Length) is forwarded and signed as received", async () =>
    {
        const big = { items: Array.from({ length: 2000 }, (_, i) => ({ i, s: `item ${i} ✓` })) };
        assertLambdaAnswer(await invoke(lambda, { method: "PUT", body: JSON.stringify(big), contentLength: false }),
            big, "chunked PUT");
    });

    it("the export's headers replace the requester's, and the requester's path is ignored", async () =>
    {
        // X-Amz-Invocation-Type: Event would make the fake answer 202 without a body; the export
        // pins RequestResponse. The requester's path is ignored (the fake answers 404 elsewhere).
        const answer = await invoke(lambda, { method: "POST", path: "/somewhere/else?Qualifier=7",
            body: JSON.stringify(EVENT),
            headers: { "X-Amz-Invocation-Type": "Event", "X-Amz-Log-Type": "Tail" } });
        assertLambdaAnswer(answer, EVENT, "requester's X-Amz-* headers overridden");
    });

    it("an export whose invocation type is Event gets the fake's 202 relayed", async () =>
    {
        const eventExport = JSON.parse(JSON.stringify(lambdaExport));
        eventExport.headers["X-Amz-Invocation-Type"] = "Event";
        const resp = ok(await sdk(membrane.export.bind(membrane), root.capabilities.export, eventExport),
            "export with Event");
        const answer = await invoke(resp.capability, { method: "POST", body: JSON.stringify(EVENT) });
        assert.equal(answer.statusCode, 202, `${answer.statusCode} ${answer.text}`);
        assert.equal(answer.text, "");
    });

    it("an export with a wrong secret gets the fake's 403 relayed, not wrapped", async () =>
    {
        const wrong = JSON.parse(JSON.stringify(lambdaExport));
        wrong.hmac["aws4-hmac-sha256"].secretAccessKey = WRONG_SECRET;
        wrongSecret = ok(await sdk(membrane.export.bind(membrane), root.capabilities.export, wrong),
            "export with a wrong secret").capability;
        const answer = await invoke(wrongSecret, { method: "POST", body: JSON.stringify(EVENT) });
        assert.equal(answer.statusCode, 403, `${answer.statusCode} ${answer.text}`);
        assert.equal(answer.headers["x-amzn-errortype"], "InvalidSignatureException");
        assert.deepEqual(answer.json, { message: SIGNATURE_MISMATCH });
    });

    it("re-exports through membrane B, then B's re-export through membrane C; C's invokes the function", async () =>
    {
        const reExport = async (through, capability, what) =>
        {
            const resp = ok(await sdk(membrane.export.bind(membrane), through.capabilities.export,
                { capability }), what);
            assert.ok(CAPABILITY_URI.exec(resp.capability), resp.capability);
            assert.notEqual(resp.capability, capability);
            return resp.capability;
        };
        viaB = await reExport(delegateB, lambda, "re-export through B");
        viaC = await reExport(delegateC, viaB, "re-export of B's through C");
        const event = { through: "C" };
        assertLambdaAnswer(await invoke(viaC, { method: "POST", body: JSON.stringify(event) }), event, "via C");
        assertLambdaAnswer(await invoke(viaB, { method: "POST", body: JSON.stringify(event) }), event, "via B");
    });

    it("Membrane.revoke of B: B's and C's re-exports answer 401, the original still 200", async () =>
    {
        const resp = ok(await sdk(membrane.revoke.bind(membrane), delegateB.capabilities.revoke), "revoke B");
        assert.deepEqual(resp, { statusCode: 202, message: "Accepted" });
        const body = JSON.stringify(EVENT);
        assertUnauthorized(await invoke(viaB, { method: "POST", body }), "via B after revoking B");
        assertUnauthorized(await invoke(viaC, { method: "POST", body }), "via C after revoking B");
        assertLambdaAnswer(await invoke(lambda, { method: "POST", body }), EVENT, "original after revoking B");
        // C itself is untouched: it can still export.
        const still = ok(await sdk(membrane.export.bind(membrane), delegateC.capabilities.export,
            { capability: lambda }), "C still exports");
        assertLambdaAnswer(await invoke(still.capability, { method: "POST", body }), EVENT, "C's fresh re-export");
    });

    it("Membrane.revoke of the tutorial's membrane: the original answers 401 too (tutorial cleanup)", async () =>
    {
        const resp = ok(await sdk(membrane.revoke.bind(membrane), root.capabilities.revoke), "revoke root");
        assert.deepEqual(resp, { statusCode: 202, message: "Accepted" });
        const body = JSON.stringify(EVENT);
        assertUnauthorized(await invoke(lambda, { method: "POST", body }), "original after revoking root");
        assertUnauthorized(await invoke(wrongSecret, { method: "POST", body }), "wrong-secret export after revoking root");
        assertUnauthorized(await invoke(lambda), "original, tutorial-style, after revoking root");
    });

    it("SIGTERM stops the server with exit status 0", async () =>
    {
        const { code, signal } = await stopProcess(server);
        assert.equal(signal, null, `stopped by ${signal}:\n${server.output}`);
        assert.equal(code, 0, `exit status ${code}:\n${server.output}`);
    });
});
