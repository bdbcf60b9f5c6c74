// A small HTTP proxy in front of the test Hub that can misbehave on purpose (cut or corrupt downloads,
// demand a token), to test the client's retries, checks and error messages.
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface ProxyBehaviour {
  /** called per request; return true when the proxy handled (sabotaged) it itself */
  intercept?: (req: http.IncomingMessage, res: http.ServerResponse, upstream: Response | null) => boolean | Promise<boolean>;
}

export async function startProxy(target: string, behaviour: ProxyBehaviour): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(async (req, res) => {
    const upstream = await fetch(target + req.url, {
      method: req.method, redirect: "manual",
      headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== "host") as [string, string][]),
    });
    if (await behaviour.intercept?.(req, res, upstream)) return;
    const headers = Object.fromEntries(upstream.headers.entries());
    res.writeHead(upstream.status, headers);
    res.end(req.method === "HEAD" ? undefined : Buffer.from(await upstream.arrayBuffer()));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
