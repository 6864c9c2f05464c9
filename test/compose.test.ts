/**
 * compose.yaml and deploy/nginx.conf checked against the product they start (no container engine
 * runs them here: see README, "Scale out"): every longclip service runs a real command of the
 * CLI in the image's entry point, every LONGCLIP_* variable is a real setting that parses, the
 * database URL names the db service with its credentials, the mounts are where the image
 * looks, the proxy's upstreams are exactly the API nodes on the image's port, and its limits
 * are not below the product's. Where Debian's docker-compose is installed, it validates the
 * file against the Compose schema too.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { Command } from "commander";
import { parse } from "yaml";
import { register as registerJobs } from "../src/cli/jobs.ts";
import { register as registerServe } from "../src/cli/serve.ts";
import {
  DEFAULT_SETTINGS,
  envName,
  loadSettings,
  PROJECT_ROOT,
  SETTING_KEYS,
} from "../src/core/settings.ts";
import { checkPgvectorVersion } from "../src/store/postgres/pgvector-version.ts";

const read = (file: string) => readFileSync(path.join(PROJECT_ROOT, file), "utf8");

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }> | string[];
}
interface ComposeFile {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

const compose = parse(read("compose.yaml"), { merge: true }) as ComposeFile;
const services = Object.entries(compose.services);
const nginx = read("deploy/nginx.conf");
const dockerfile = read("Dockerfile");

/** Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}` against `vars`. */
function interpolate(text: string, vars: Record<string, string>): string {
  return text.replace(
    /\$\{(\w+)(?::([-?])([^}]*))?\}/g,
    (_match, name: string, kind, rest: string) => {
      const value = vars[name];
      if (value !== undefined && value !== "") return value;
      if (kind === "?") throw new Error(`${name} is required: ${rest}`);
      return kind === "-" ? rest : "";
    },
  );
}

/** The `ENV` values of the Dockerfile's default (last) stage, the CPU runtime. */
function runtimeEnv(): Record<string, string> {
  const stage = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
  const block = /\nENV ((?:[^\n]*\\\n)*[^\n]*)/.exec(stage)?.[1] ?? "";
  return Object.fromEntries(
    [...block.matchAll(/([A-Z_]+)=(\S+)/g)].map((m) => [m[1] as string, m[2] as string]),
  );
}

const longclipServices = services.filter(([, service]) => service.command?.[1]?.includes("cli"));
const commandOf = (service: Service) => service.command?.[2];
const apiNodes = longclipServices.filter(([, service]) => commandOf(service) === "serve");
const workers = longclipServices.filter(([, service]) => commandOf(service) === "worker");

test("the services: pgvector the product accepts, with its data volume, two API nodes, one worker, one proxy", () => {
  const [dbName, db] = services.find(([, s]) => s.image?.startsWith("pgvector/pgvector:")) ?? [];
  assert.ok(db !== undefined && dbName !== undefined, "a pgvector/pgvector service");
  const version = /^pgvector\/pgvector:(\d+\.\d+\.\d+)-pg\d+$/.exec(db.image ?? "")?.[1];
  assert.ok(version, `a pinned VERSION-pgNN tag, not ${db.image}`);
  // The image's pgvector passes the product's own start-up check.
  checkPgvectorVersion(version);
  const dataVolume = db.volumes?.find((v) => v.endsWith(":/var/lib/postgresql/data"));
  assert.ok(dataVolume, "the database's data directory is a volume");
  assert.ok((dataVolume.split(":")[0] as string) in (compose.volumes ?? {}), "a named volume");

  assert.deepEqual(
    apiNodes.map(([name]) => name),
    ["api-1", "api-2"],
  );
  assert.deepEqual(
    workers.map(([name]) => name),
    ["worker"],
  );
  const published = services.flatMap(([, s]) => s.ports ?? []);
  assert.equal(published.length, 1, "one port reaches the API nodes");
  for (const [name, service] of longclipServices) {
    const depends = service.depends_on as Record<string, { condition: string }>;
    assert.equal(depends?.[dbName]?.condition, "service_healthy", `${name} waits for the db`);
  }
});

test("each longclip service runs a command of the CLI the image starts, with real flags", () => {
  const imageCommand = /\nCMD (\[[^\n]*\])\s*$/.exec(dockerfile)?.[1];
  assert.ok(imageCommand, "the Dockerfile's default CMD");
  const entry = (JSON.parse(imageCommand) as string[]).slice(0, 2);
  const program = new Command("longclip");
  registerServe(program);
  registerJobs(program);
  for (const [name, service] of longclipServices) {
    const command = service.command ?? [];
    assert.deepEqual(command.slice(0, 2), entry, `${name} starts the image's CLI`);
    const sub = program.commands.find((c) => c.name() === command[2]);
    assert.ok(sub, `${name}: longclip ${command[2]} is a command`);
    const flags = new Set(sub.options.map((option) => option.long));
    for (const argument of command.slice(3).filter((a) => a.startsWith("--"))) {
      assert.ok(
        flags.has(argument.split("=")[0]),
        `${name}: ${argument} is a flag of ${command[2]}`,
      );
    }
  }
});

test("the environment is real settings that parse, and the database URL names the db service", () => {
  const settingVariables = new Set(SETTING_KEYS.map(envName));
  const db = compose.services.db as Service;
  const password = "a-password";
  const vars = { POSTGRES_PASSWORD: password };
  const image = runtimeEnv();
  for (const [name, service] of longclipServices) {
    const environment = Object.fromEntries(
      Object.entries(service.environment ?? {}).map(([key, value]) => [
        key,
        interpolate(String(value), vars),
      ]),
    );
    for (const key of Object.keys(environment)) {
      assert.ok(settingVariables.has(key), `${name}: ${key} is no setting`);
    }
    const settings = loadSettings({}, { ...image, ...environment });
    const url = new URL(settings.databaseUrl ?? "");
    assert.equal(url.hostname, "db", name);
    assert.equal(url.port, "5432");
    assert.equal(url.username, db.environment?.POSTGRES_USER);
    assert.equal(url.password, password);
    assert.equal(url.pathname, `/${db.environment?.POSTGRES_DB}`);
    assert.equal(interpolate(db.environment?.POSTGRES_PASSWORD ?? "", vars), password);
    // The model and the media are mounted where the image's settings look for them.
    const targets = (service.volumes ?? []).map((v) => interpolate(v, vars).split(":")[1]);
    assert.ok(targets.includes(settings.modelDir), `${name} mounts ${settings.modelDir}`);
    assert.ok(targets.includes(settings.mediaRoot), `${name} mounts ${settings.mediaRoot}`);
  }
  assert.throws(() => interpolate(db.environment?.POSTGRES_PASSWORD ?? "", {}), /required/);
});

test("the proxy sends to exactly the API nodes, on the image's port, within the product's limits", () => {
  const port = runtimeEnv().PORT;
  const upstreams = [...nginx.matchAll(/^\s*server\s+([\w.-]+):(\d+)/gm)].map((m) => ({
    host: m[1],
    port: m[2],
  }));
  assert.deepEqual(
    upstreams,
    apiNodes.map(([name]) => ({ host: name, port })),
  );
  const listen = /^\s*listen\s+(\d+);/m.exec(nginx)?.[1];
  const proxy = services.find(([, s]) => (s.volumes ?? []).some((v) => v.includes("nginx.conf")));
  assert.ok(proxy, "the proxy service mounts deploy/nginx.conf");
  assert.equal(proxy[1].ports?.[0]?.split(":")[1], listen, "the published port is nginx's");

  const bodyLimit = /client_max_body_size\s+(\d+)m;/.exec(nginx)?.[1];
  assert.ok(Number(bodyLimit) * 1024 * 1024 >= DEFAULT_SETTINGS.maxRequestBytes);
  const readTimeout = /proxy_read_timeout\s+(\d+)s;/.exec(nginx)?.[1];
  assert.ok(Number(readTimeout) * 1000 > DEFAULT_SETTINGS.requestTimeoutMs);
  assert.match(nginx, /proxy_set_header Host \$http_host;/, "the nodes see the client's Host");
});

const composeTool = spawnSync("docker-compose", ["version"], { encoding: "utf8" });
test("docker-compose (Debian's, where installed) validates the file against the Compose schema", {
  skip:
    composeTool.status === 0
      ? false
      : "docker-compose is not installed (apt-get install docker-compose)",
}, () => {
  const config = execFileSync("docker-compose", ["-f", "compose.yaml", "config", "--services"], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, POSTGRES_PASSWORD: "a-password" },
    encoding: "utf8",
  });
  assert.deepEqual(config.trim().split("\n").sort(), Object.keys(compose.services).sort());
});
