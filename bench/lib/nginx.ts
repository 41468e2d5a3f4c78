/**
 * Debian nginx as a TLS reverse proxy in front of a registry, the baseline trustgate is measured
 * against. Two variants (the exact text is in bench/README.md):
 *
 *  - `recipe`: distribution's docs/recipes/nginx.md server block (TLS, client_max_body_size 0,
 *    chunked_transfer_encoding on, the Docker-Distribution-Api-Version map, Host/X-Real-IP/
 *    X-Forwarded-* headers, proxy_read_timeout 900), minus its htpasswd auth and user-agent gate,
 *    plus `proxy_buffering off` as our issue asks.
 *  - `tuned`: the same, with HTTP/1.1 keep-alive to the upstream, response buffering on with
 *    256k buffers (`proxy_buffer_size 256k; proxy_buffers 8 256k; proxy_busy_buffers_size 512k`),
 *    no spill to temp files (`proxy_max_temp_file_size 0`), and `proxy_request_buffering off` so
 *    uploads stream.
 *
 * Both run one worker process, like trustgate's single Node process.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort, waitForPort } from '../../test/helpers/ports.js';
import { makeTempDir, removeTempDir, spawnManaged, type Managed } from '../../test/helpers/stack.js';

export type NginxVariant = 'recipe' | 'tuned';

export interface NginxHandle {
  url: string;
  port: number;
  pid: number;
  variant: NginxVariant;
  configPath: string;
  stop(): Promise<void>;
}

export interface NginxOptions {
  /** The registry, e.g. http://127.0.0.1:5000 */
  upstream: string;
  cert: string;
  key: string;
  variant: NginxVariant;
  workers?: number;
}

export function nginxConfig(o: NginxOptions & { port: number; prefix: string }): string {
  const up = new URL(o.upstream);
  const tuned = o.variant === 'tuned';
  const tmp = (n: string): string => path.join(o.prefix, 'tmp', n);
  return `# trustgate bench: nginx variant "${o.variant}"
worker_processes ${o.workers ?? 1};
pid ${path.join(o.prefix, 'nginx.pid')};
error_log ${path.join(o.prefix, 'error.log')} warn;
events {
  worker_connections 1024;
}
http {
  access_log off;
  client_body_temp_path ${tmp('client_body')};
  proxy_temp_path ${tmp('proxy')};
  fastcgi_temp_path ${tmp('fastcgi')};
  uwsgi_temp_path ${tmp('uwsgi')};
  scgi_temp_path ${tmp('scgi')};

  upstream docker-registry {
    server ${up.host};${tuned ? '\n    keepalive 16;' : ''}
  }

  map $upstream_http_docker_distribution_api_version $docker_distribution_api_version {
    'registry/2.0' '';
    default registry/2.0;
  }

  server {
    listen 127.0.0.1:${o.port} ssl;
    server_name localhost;

    ssl_certificate ${o.cert};
    ssl_certificate_key ${o.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;

    # disable any limits to avoid HTTP 413 for large image uploads
    client_max_body_size 0;
    # required to avoid HTTP 411
    chunked_transfer_encoding on;

    location /v2/ {
      add_header 'Docker-Distribution-Api-Version' $docker_distribution_api_version always;

      proxy_pass                          http://docker-registry;
      proxy_set_header  Host              $http_host;
      proxy_set_header  X-Real-IP         $remote_addr;
      proxy_set_header  X-Forwarded-For   $proxy_add_x_forwarded_for;
      proxy_set_header  X-Forwarded-Proto $scheme;
      proxy_read_timeout                  900;
${
  tuned
    ? `      proxy_http_version                  1.1;
      proxy_set_header  Connection        "";
      proxy_buffering                     on;
      proxy_buffer_size                   256k;
      proxy_buffers                       8 256k;
      proxy_busy_buffers_size             512k;
      proxy_max_temp_file_size            0;
      proxy_request_buffering             off;`
    : `      proxy_buffering                     off;`
}
    }
  }
}
`;
}

export async function startNginx(o: NginxOptions): Promise<NginxHandle> {
  const prefix = makeTempDir(`nginx-${o.variant}`);
  // Workers drop to `nobody` when the master runs as root: they need the temp dirs.
  for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
    mkdirSync(path.join(prefix, 'tmp', d), { recursive: true });
    chmodSync(path.join(prefix, 'tmp', d), 0o777);
  }
  chmodSync(path.join(prefix, 'tmp'), 0o777);
  chmodSync(prefix, 0o755);
  const port = await freePort();
  const configPath = path.join(prefix, 'nginx.conf');
  writeFileSync(configPath, nginxConfig({ ...o, port, prefix }));
  let proc: Managed | undefined;
  try {
    proc = spawnManaged('nginx', [
      '-c',
      configPath,
      '-p',
      prefix,
      '-e',
      path.join(prefix, 'error.log'),
      '-g',
      'daemon off;',
    ]);
    let started = false;
    const exited = proc.exited().then(() => {
      if (!started) throw new Error(`nginx exited at start:\n${proc?.output() ?? ''}`);
    });
    exited.catch(() => {});
    await Promise.race([waitForPort(port, 10_000), exited]);
    started = true;
  } catch (err) {
    await proc?.stop('SIGKILL');
    removeTempDir(prefix);
    throw err;
  }
  const p = proc;
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    pid: p.pid,
    variant: o.variant,
    configPath,
    async stop() {
      // SIGQUIT: graceful shutdown of master and workers.
      await p.stop('SIGQUIT', 5000);
      removeTempDir(prefix);
    },
  };
}
