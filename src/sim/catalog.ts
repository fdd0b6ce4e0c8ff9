import { createHash } from 'node:crypto';
import { createReadStream, type Dirent, type Stats } from 'node:fs';
import { open, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, extname, join, relative, sep } from 'node:path';

// The simulator's model catalog, read from a models dir in sdflow's layout: stableDiffusion/ (checkpoints), sdVae/,
// lora/ and controlNet/. Checkpoints are named and hashed like A1111's: the title is `<relative name> [<first 10
// hex of sha256>]`. Hashes are cached by (path, size, mtime), so a rescan only hashes new or changed files; the
// hashes of big files are also kept in a file (like A1111's cache.json), so a freshly started simulator does not
// rehash big models.

export interface Checkpoint {
  /** `<name> [<shorthash>]`, A1111's title. */
  title: string;
  /** Path relative to stableDiffusion/, with `/` separators, extension included: A1111's `name`. */
  name: string;
  /** A1111's model_name: name without extension, with `/` replaced by `_`. */
  modelName: string;
  /** The base name without extension: what A1111 reports as sd_model_name. */
  shortName: string;
  hash: string;
  sha256: string;
  filename: string;
  size: number;
}

export interface ModelFile {
  /** File name relative to its type folder. */
  name: string;
  /** Name without extension. */
  stem: string;
  filename: string;
  size: number;
}

export interface ControlNetModel extends ModelFile {
  /** A1111's legacy 8-hex model hash, as the ControlNet extension shows it: `<stem> [<hash>]`. */
  title: string;
}

/** Sidecar files that sit next to models but are not models. */
const SIDECAR = new Set([
  '.yaml',
  '.yml',
  '.json',
  '.txt',
  '.md',
  '.png',
  '.jpg',
  '.jpeg',
  '.webp',
  '.info',
  '.tmp',
  '.part',
]);
const MAX_DEPTH = 4;
/** Only hashes of files at least this big are worth keeping in the cache file. */
const PERSIST_MIN_BYTES = 16 * 1024 * 1024;

const isModelName = (name: string) => !name.startsWith('.') && !SIDECAR.has(extname(name).toLowerCase());
const stripExt = (name: string) => name.slice(0, name.length - extname(name).length);

/** Model files under `dir`, sorted, recursing into subfolders; symlinks are followed. */
async function listFiles(dir: string, depth = 0): Promise<Array<{ path: string; stats: Stats }>> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: Array<{ path: string; stats: Stats }> = [];
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    const stats = await stat(path).catch(() => undefined); // follows symlinks; undefined if dangling or gone
    if (!stats) continue;
    if (stats.isDirectory() && depth < MAX_DEPTH) out.push(...(await listFiles(path, depth + 1)));
    else if (stats.isFile() && isModelName(entry.name)) out.push({ path, stats });
  }
  return out;
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (d) => hash.update(d))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** A1111's legacy model hash: sha256 of 64 KiB at offset 1 MiB, first 8 hex. */
async function legacyHash(path: string): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.alloc(0x10000);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0x100000);
    return createHash('sha256').update(buf.subarray(0, bytesRead)).digest('hex').slice(0, 8);
  } finally {
    await handle.close();
  }
}

export class ModelCatalog {
  checkpoints: Checkpoint[] = [];
  vaes: ModelFile[] = [];
  loras: ModelFile[] = [];
  controlNets: ControlNetModel[] = [];
  private hashCache = new Map<string, string>();
  /** The entries of big files, which go to the cache file. */
  private persisted = new Map<string, string>();
  private cacheLoaded = false;
  private cacheDirty = false;
  private scanning: Promise<void> | undefined;
  private rescan: Promise<void> | undefined;

  constructor(
    readonly modelsDir: string,
    private readonly cacheFile: string | null = join(tmpdir(), 'sdflow-sim-hash-cache.json'),
  ) {}

  /**
   * Rescans every folder. A call during a scan gets one more scan after it (that scan may have missed a new file);
   * calls made meanwhile share it. A missing models dir is an empty catalog.
   */
  scan(): Promise<void> {
    if (this.scanning) {
      this.rescan ??= this.scanning.then(() => {
        this.rescan = undefined;
        return this.scan();
      });
      return this.rescan;
    }
    this.scanning = this.doScan().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  private async loadHashCache(): Promise<void> {
    if (this.cacheLoaded || !this.cacheFile) return;
    this.cacheLoaded = true;
    try {
      const saved = JSON.parse(await readFile(this.cacheFile, 'utf8')) as Record<string, unknown>;
      for (const [k, v] of Object.entries(saved))
        if (typeof v === 'string' && !this.hashCache.has(k)) this.hashCache.set(k, v);
    } catch {
      // no cache yet, or an unreadable one: hash again
    }
  }

  /** Writes the cache atomically (temp file, then rename); a failure only costs a rehash later. */
  private async saveHashCache(): Promise<void> {
    if (!this.cacheDirty || !this.cacheFile) return;
    this.cacheDirty = false;
    const tmp = `${this.cacheFile}.${process.pid}.tmp`;
    try {
      // keep what other simulators saved meanwhile
      const saved = JSON.parse(await readFile(this.cacheFile, 'utf8').catch(() => '{}')) as Record<string, unknown>;
      for (const [k, v] of Object.entries(saved))
        if (typeof v === 'string' && !this.persisted.has(k)) this.persisted.set(k, v);
      await writeFile(tmp, JSON.stringify(Object.fromEntries(this.persisted)));
      await rename(tmp, this.cacheFile);
    } catch {
      // best effort
    }
  }

  private async doScan(): Promise<void> {
    await this.loadHashCache();
    const [checkpoints, vaes, loras, controlNets] = await Promise.all([
      this.scanCheckpoints(),
      this.scanFiles('sdVae'),
      this.scanFiles('lora'),
      this.scanControlNets(),
    ]);
    Object.assign(this, { checkpoints, vaes, loras, controlNets });
    await this.saveHashCache();
  }

  private async cachedHash(path: string, stats: Stats, kind: string, compute: () => Promise<string>) {
    const key = `${kind}\u0000${path}\u0000${stats.size}\u0000${stats.mtimeMs}`;
    let hash = this.hashCache.get(key);
    if (hash === undefined) {
      hash = await compute();
      this.hashCache.set(key, hash);
      if (stats.size >= PERSIST_MIN_BYTES) {
        this.persisted.set(key, hash);
        this.cacheDirty = true;
      }
    }
    return hash;
  }

  private async scanCheckpoints(): Promise<Checkpoint[]> {
    const dir = join(this.modelsDir, 'stableDiffusion');
    const out: Checkpoint[] = [];
    for (const { path, stats } of await listFiles(dir)) {
      const sha256 = await this.cachedHash(path, stats, 'sha256', () => sha256File(path)).catch(() => undefined);
      if (sha256 === undefined) continue; // vanished while scanning
      const name = relative(dir, path).split(sep).join('/');
      const hash = sha256.slice(0, 10);
      out.push({
        title: `${name} [${hash}]`,
        name,
        modelName: stripExt(name).replace(/\//g, '_'),
        shortName: stripExt(basename(name)),
        hash,
        sha256,
        filename: path,
        size: stats.size,
      });
    }
    return out;
  }

  private async scanFiles(type: string): Promise<ModelFile[]> {
    const dir = join(this.modelsDir, type);
    return (await listFiles(dir)).map(({ path, stats }) => {
      const name = relative(dir, path).split(sep).join('/');
      return { name, stem: stripExt(basename(name)), filename: path, size: stats.size };
    });
  }

  private async scanControlNets(): Promise<ControlNetModel[]> {
    const out: ControlNetModel[] = [];
    for (const file of await this.scanFiles('controlNet')) {
      const stats = await stat(file.filename).catch(() => undefined);
      if (!stats) continue;
      const hash = await this.cachedHash(file.filename, stats, 'legacy', () => legacyHash(file.filename)).catch(
        () => 'NOFILE',
      );
      out.push({ ...file, title: `${file.stem} [${hash}]` });
    }
    return out;
  }

  /** The checkpoint a name refers to in the current catalog: title, file name, name without extension, hash… */
  findCheckpoint(ref: string): Checkpoint | undefined {
    const wanted = ref.trim();
    const bare = wanted.replace(/\s*\[[0-9a-fA-F]{8,64}\]$/, '');
    const bracketHash = /\[([0-9a-fA-F]{8,64})\]$/.exec(wanted)?.[1]?.toLowerCase();
    const byKey = (key: string) =>
      this.checkpoints.find((c) => c.title === key) ??
      this.checkpoints.find((c) => c.name === key || c.modelName === key || stripExt(c.name) === key) ??
      this.checkpoints.find((c) => basename(c.name) === key || c.shortName === key);
    return (
      byKey(wanted) ??
      (bracketHash ? this.checkpoints.find((c) => c.name === bare && c.sha256.startsWith(bracketHash)) : undefined) ??
      byKey(bare) ??
      this.checkpoints.find((c) => c.hash === wanted.toLowerCase() || c.sha256 === wanted.toLowerCase())
    );
  }

  /** Like findCheckpoint, rescanning once when the name is unknown (a file may have been added since). */
  async resolveCheckpoint(ref: string): Promise<Checkpoint | undefined> {
    const found = this.findCheckpoint(ref);
    if (found) return found;
    await this.scan();
    return this.findCheckpoint(ref);
  }

  /** sha256 of any catalog file (cached like the checkpoints'); undefined when it cannot be read. */
  async fileSha256(file: { filename: string }): Promise<string | undefined> {
    const stats = await stat(file.filename).catch(() => undefined);
    if (!stats) return undefined;
    return this.cachedHash(file.filename, stats, 'sha256', () => sha256File(file.filename)).catch(() => undefined);
  }

  /** The VAE a name refers to (file name, or name without extension). */
  findVae(ref: string): ModelFile | undefined {
    return this.vaes.find((v) => v.name === ref) ?? this.vaes.find((v) => v.stem === ref || basename(v.name) === ref);
  }

  async resolveVae(ref: string): Promise<ModelFile | undefined> {
    const found = this.findVae(ref);
    if (found) return found;
    await this.scan();
    return this.findVae(ref);
  }
}
