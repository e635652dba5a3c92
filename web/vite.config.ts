/// <reference types="vitest/config" />
import tailwindcss from "@tailwindcss/vite";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` proxies the API and /config.json to a running `llmtally local` (default port 8787).
const localStack = process.env.LLMTALLY_LOCAL_URL ?? "http://127.0.0.1:8787";

export default defineConfig({
  plugins: [react(), tailwindcss()],
  build: {
    target: "es2022",
    sourcemap: false,
    // One JS chunk (React is ~3/4 of it) and one CSS file; `make bench` prints the gzip size.
    chunkSizeWarningLimit: 300,
  },
  server: {
    proxy: {
      "/api": localStack,
      "/config.json": localStack,
    },
  },
  test: {
    environment: "jsdom",
    setupFiles: ["./src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
    restoreMocks: true,
    // Generous: the suite runs beside the Python tests on small machines; a slow run is not a failure.
    testTimeout: 15_000,
    css: false,
  },
});
