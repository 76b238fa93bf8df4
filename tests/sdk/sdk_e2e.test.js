// End-to-end test: the real membraned, over HTTPS, driven only through the ORIGINAL Node SDK
// `capability-sdk` 0.12.2 (contract §1-4 and §8). The SDK is used as its users use it:
// `new CapabilitySDK.Membrane({tls: {trustedCA: {AUTHORITY: CA_PEM}}})`, callbacks
// `(error, response)`, and on failure the SDK's own error object
// `{error: <reason phrase>, statusCode, message}`.
//
// Needs: MEMBRANED_BINARY (path of the membraned executable), the `openssl` CLI.
// Nothing here leaves the machine: the server listens on 127.0.0.1, and no exported capability
// is invoked towards its upstream (only re-exports of built-in capabilities are invoked, and
// those are served by membraned itself).
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");

const CapabilitySDK = require("capability-sdk");

const { CAPABILITY_URI, assertCapabilityOf, lambdaExportBody, sdk, ok, stopProcess, newServer, startServer } = require("./support");

// ---------------------------------------------------------------------------------------------
// helpers (the shared ones are in support.js)

// Asserts that an SDK call failed with the SDK's HTTP error object for `statusCode`.
const failsWith = ({ error, response }, statusCode, reason, what) =>
{
    assert.equal(response, undefined, `${what}: expected a failure, got ${JSON.stringify(response)}`);
    assert.ok(error, `${what}: the SDK reported no error`);
    assert.equal(error.statusCode, statusCode, `${what}: ${JSON.stringify(error)}`);
    assert.equal(error.error, reason, `${what}: ${JSON.stringify(error)}`);
    assert.equal(typeof error.message, "string", `${what}: ${JSON.stringify(error)}`);
    assert.ok(error.message.length > 0, `${what}: empty message`);
    return error;
};

// Byte order of the UTF-8 encodings, the order contract §4 gives to query results.
const byteOrder = (a, b) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));

// ---------------------------------------------------------------------------------------------
// the server

const server = newServer();
const stopServer = () => stopProcess(server);

// ---------------------------------------------------------------------------------------------
// the test

describe("capability-sdk 0.12.2 against membraned over HTTPS", { timeout: 120000 }, () =>
{
    let membrane;       // the SDK's Membrane service, trusting the test CA for the authority
    let tenant;         // {id, capabilities: {create, query, deleteSelf}}
    const created = {}; // id -> create response
    // Spaces, '/', non-ASCII (including a character outside the BMP), and plain ones.
    const IDS = [ "alpha", "with space", "a/b/c", "ünïcødé-名前", "zeta 🦀 z", "Beta" ];
    const ORDERED = IDS.slice().sort(byteOrder);
    const LAMBDA_EXPORT = lambdaExportBody(
    {
        uri: "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-function/invocations",
        awsAccessKeyId: "AKIAIOSFODNN7EXAMPLE",
        secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    });
    let first;          // membrane "alpha": exports the uri capability
    let second;         // membrane "with space": re-exports, then is revoked
    let third;          // membrane "a/b/c": used to probe whether capabilities still exist
    let uriCapability;  // exported through `first`
    let reExported;     // uriCapability re-exported through `second`
    let reExportedExport; // first's export capability, re-exported through `second`
    let reExportedRevoke; // first's revoke capability, re-exported through `second`

    before(async () =>
    {
        await startServer(server, { tmpPrefix: "membraned-sdk-e2e-", caName: "membraned sdk e2e test CA" });
        tenant = server.tenant;
        membrane = new CapabilitySDK.Membrane(
            { tls: { trustedCA: { [server.authority]: server.caPem } } });
    });

    after(async () =>
    {
        // Normally the last test has stopped it already; this covers failures before that.
        await stopServer();
        if (server.tmp) fs.rmSync(server.tmp, { recursive: true, force: true });
    });

    it("first-tenant.json holds the tenant's three capabilities for the serving authority", () =>
    {
        assert.equal(typeof tenant.id, "string");
        assert.ok(tenant.id.length > 0);
        for (const name of [ "create", "query", "deleteSelf" ])
        {
            assertCapabilityOf(tenant.capabilities[name], server.authority, `${name}: ${tenant.capabilities[name]}`);
        }
    });

    it("the SDK refuses the server's certificate unless the CA is trusted for that authority", async () =>
    {
        const untrusting = new CapabilitySDK.Membrane(
            { tls: { trustedCA: { "localhost:1": server.caPem } } }); // another authority
        const { error, response } = await sdk(untrusting.query.bind(untrusting),
            tenant.capabilities.query, {});
        assert.equal(response, undefined);
        assert.ok(error, "expected a TLS failure");
        assert.equal(error.error, "Request failed", JSON.stringify(error));
        assert.match(error.message, /certificate/i);
    });

    it("creates membranes whose ids hold spaces, '/' and non-ASCII characters", async () =>
    {
        for (const id of IDS)
        {
            const resp = ok(await sdk(membrane.create.bind(membrane), tenant.capabilities.create, { id }),
                `create ${JSON.stringify(id)}`);
            assert.deepEqual(Object.keys(resp).sort(), [ "capabilities", "id" ]);
            assert.equal(resp.id, id);
            assert.deepEqual(Object.keys(resp.capabilities).sort(), [ "export", "revoke" ]);
            for (const uri of Object.values(resp.capabilities))
            {
                assertCapabilityOf(uri, server.authority);
            }
            assert.notEqual(resp.capabilities.export, resp.capabilities.revoke);
            created[id] = resp;
        }
        first = created["alpha"];
        second = created["with space"];
        third = created["a/b/c"];
    });

    it("a second create with an existing id fails with the SDK's 409 error", async () =>
    {
        failsWith(await sdk(membrane.create.bind(membrane), tenant.capabilities.create, { id: "a/b/c" }),
            409, "Conflict", "duplicate create");
    });

    it("query without parameters answers one membrane (default limit 1) and completed false", async () =>
    {
        const resp = ok(await sdk(membrane.query.bind(membrane), tenant.capabilities.query, {}), "query {}");
        assert.equal(resp.completed, false);
        assert.equal(resp.membranes.length, 1);
        assert.deepEqual(resp.membranes[0], created[ORDERED[0]]);
    });

    it("query pages with limit and lastId in byte order, and completed tells whether more exist", async () =>
    {
        for (const limit of [ 1, 2, 4 ])
        {
            const seen = [];
            let lastId;
            for (let page = 0; page < IDS.length + 1; page++)
            {
                const query = lastId === undefined ? { limit } : { limit, lastId };
                const resp = ok(await sdk(membrane.query.bind(membrane), tenant.capabilities.query, query),
                    `query ${JSON.stringify(query)}`);
                assert.deepEqual(Object.keys(resp).sort(), [ "completed", "membranes" ]);
                assert.ok(resp.membranes.length <= limit);
                for (const m of resp.membranes)
                {
                    assert.deepEqual(m, created[m.id], `the same capabilities as create for ${m.id}`);
                    seen.push(m.id);
                }
                assert.equal(resp.completed, seen.length === IDS.length,
                    `completed after ${seen.length} of ${IDS.length} with limit ${limit}`);
                if (resp.completed) break;
                lastId = seen[seen.length - 1];
            }
            assert.deepEqual(seen, ORDERED, `paging with limit ${limit}`);
        }
        // A limit equal to the number of membranes: all of them, and nothing more to come.
        const all = ok(await sdk(membrane.query.bind(membrane), tenant.capabilities.query,
            { limit: IDS.length }), "query all");
        assert.deepEqual(all.membranes.map(m => m.id), ORDERED);
        assert.equal(all.completed, true);
        // Starting after the last one: empty and completed.
        const none = ok(await sdk(membrane.query.bind(membrane), tenant.capabilities.query,
            { lastId: ORDERED[ORDERED.length - 1], limit: 10 }), "query after the last");
        assert.deepEqual(none, { membranes: [], completed: true });
    });

    it("query by id finds exactly that membrane", async () =>
    {
        for (const id of IDS)
        {
            const resp = ok(await sdk(membrane.query.bind(membrane), tenant.capabilities.query, { id }),
                `query id ${JSON.stringify(id)}`);
            assert.deepEqual(resp, { membranes: [ created[id] ], completed: true });
        }
        const missing = ok(await sdk(membrane.query.bind(membrane), tenant.capabilities.query,
            { id: "no such membrane" }), "query missing id");
        assert.deepEqual(missing, { membranes: [], completed: true });
    });

    it("a query the server rejects surfaces as the SDK's 400 error", async () =>
    {
        // The SDK lets a negative limit through; contract §4 makes it a 400.
        failsWith(await sdk(membrane.query.bind(membrane), tenant.capabilities.query, { limit: -1 }),
            400, "Bad Request", "limit -1");
    });

    it("exports a uri capability shaped like the Lambda tutorial (aws4-hmac-sha256)", async () =>
    {
        const resp = ok(await sdk(membrane.export.bind(membrane), first.capabilities.export, LAMBDA_EXPORT),
            "export lambda");
        // The grant's handle and its own revoke capability come beside it (contract §12); the SDK
        // passes the extra fields through.
        assert.deepEqual(Object.keys(resp).sort(), [ "capability", "id", "revoke" ]);
        assert.match(resp.id, /^g_[0-9a-f]{24}$/);
        assertCapabilityOf(resp.capability, server.authority);
        assertCapabilityOf(resp.revoke, server.authority);
        uriCapability = resp.capability;
        // No secret comes back in any answer.
        assert.ok(!JSON.stringify(resp).includes(LAMBDA_EXPORT.hmac["aws4-hmac-sha256"].secretAccessKey));
    });

    it("re-exports the uri capability, and the first membrane's own capabilities, through a second membrane", async () =>
    {
        const reExport = async (capability, what) =>
        {
            const resp = ok(await sdk(membrane.export.bind(membrane), second.capabilities.export,
                { capability }), what);
            assert.deepEqual(Object.keys(resp).sort(), [ "capability", "id", "revoke" ]);
            assert.ok(CAPABILITY_URI.exec(resp.capability), resp.capability);
            assert.notEqual(resp.capability, capability);
            return resp.capability;
        };
        reExported = await reExport(uriCapability, "re-export the uri capability");
        reExportedExport = await reExport(first.capabilities.export, "re-export first's export capability");
        reExportedRevoke = await reExport(first.capabilities.revoke, "re-export first's revoke capability");

        // The re-exported export capability acts as first's export capability.
        const viaReExport = ok(await sdk(membrane.export.bind(membrane), reExportedExport, LAMBDA_EXPORT),
            "export through the re-exported export capability");
        assert.ok(CAPABILITY_URI.exec(viaReExport.capability), viaReExport.capability);

        // The re-export exists: it can itself be re-exported through a third membrane.
        const chained = ok(await sdk(membrane.export.bind(membrane), third.capabilities.export,
            { capability: reExported }), "re-export the re-export through a third membrane");
        assert.ok(CAPABILITY_URI.exec(chained.capability), chained.capability);
    });

    it("re-exporting a capability that does not exist fails with the SDK's 404 error", async () =>
    {
        const unknown = `cpblty://${server.authority}/#CPBLTY1-${Buffer.alloc(64, 7).toString("base64url")}`;
        failsWith(await sdk(membrane.export.bind(membrane), third.capabilities.export, { capability: unknown }),
            404, "Not Found", "re-export unknown");
    });

    it("revokes the second membrane, and revoking it again still succeeds", async () =>
    {
        const once = ok(await sdk(membrane.revoke.bind(membrane), second.capabilities.revoke), "revoke");
        assert.deepEqual(once, { statusCode: 202, message: "Accepted" });
        const twice = ok(await sdk(membrane.revoke.bind(membrane), second.capabilities.revoke), "revoke again");
        assert.deepEqual(twice, { statusCode: 202, message: "Accepted" });
    });

    it("after the revocation, what went through the second membrane answers 401", async () =>
    {
        // first's export and revoke capabilities, as re-exported through the revoked membrane.
        failsWith(await sdk(membrane.export.bind(membrane), reExportedExport, LAMBDA_EXPORT),
            401, "Unauthorized", "export through the revoked re-export");
        failsWith(await sdk(membrane.revoke.bind(membrane), reExportedRevoke),
            401, "Unauthorized", "revoke through the revoked re-export");
        // The second membrane's own export capability.
        failsWith(await sdk(membrane.export.bind(membrane), second.capabilities.export, LAMBDA_EXPORT),
            401, "Unauthorized", "export through the revoked membrane");
        // The re-exported uri capability is gone: re-exporting it is now 404.
        failsWith(await sdk(membrane.export.bind(membrane), third.capabilities.export, { capability: reExported }),
            404, "Not Found", "re-export of the revoked re-export");
    });

    it("the first membrane and its uri capability still work", async () =>
    {
        const again = ok(await sdk(membrane.export.bind(membrane), first.capabilities.export, LAMBDA_EXPORT),
            "export through the first membrane");
        assert.ok(CAPABILITY_URI.exec(again.capability), again.capability);
        const still = ok(await sdk(membrane.export.bind(membrane), third.capabilities.export,
            { capability: uriCapability }), "re-export of the original uri capability");
        assert.ok(CAPABILITY_URI.exec(still.capability), still.capability);
        const q = ok(await sdk(membrane.query.bind(membrane), tenant.capabilities.query, { id: "alpha" }),
            "query alpha");
        assert.deepEqual(q, { membranes: [ first ], completed: true });
    });

    it("the revoked membrane's id may be created again, with new capabilities", async () =>
    {
        const resp = ok(await sdk(membrane.create.bind(membrane), tenant.capabilities.create, { id: "with space" }),
            "create the revoked id again");
        assert.equal(resp.id, "with space");
        assert.notEqual(resp.capabilities.export, second.capabilities.export);
        assert.notEqual(resp.capabilities.revoke, second.capabilities.revoke);
        const q = ok(await sdk(membrane.query.bind(membrane), tenant.capabilities.query, { id: "with space" }),
            "query the re-created id");
        assert.deepEqual(q, { membranes: [ resp ], completed: true });
    });

    it("deleteSelf succeeds, and then the tenant's and its membranes' capabilities answer 401", async () =>
    {
        const resp = ok(await sdk(membrane.deleteSelf.bind(membrane), tenant.capabilities.deleteSelf), "deleteSelf");
        assert.deepEqual(resp, { statusCode: 202, message: "Accepted" });

        failsWith(await sdk(membrane.create.bind(membrane), tenant.capabilities.create, { id: "after delete" }),
            401, "Unauthorized", "create after deleteSelf");
        failsWith(await sdk(membrane.query.bind(membrane), tenant.capabilities.query, {}),
            401, "Unauthorized", "query after deleteSelf");
        failsWith(await sdk(membrane.export.bind(membrane), first.capabilities.export, LAMBDA_EXPORT),
            401, "Unauthorized", "export after deleteSelf");
        failsWith(await sdk(membrane.deleteSelf.bind(membrane), tenant.capabilities.deleteSelf),
            401, "Unauthorized", "deleteSelf again");
    });

    it("SIGTERM stops the server with exit status 0", async () =>
    {
        const { code, signal } = await stopServer();
        assert.equal(signal, null, `stopped by ${signal}:\n${server.output}`);
        assert.equal(code, 0, `exit status ${code}:\n${server.output}`);
    });
});
