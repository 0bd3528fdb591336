// Builds the single-page UI into dist/, which `imgsearch serve` serves. `npm run dev`
// serves it with hot reload and forwards /api to a running `imgsearch serve` (port 8080).
import { copyFileSync, mkdirSync } from 'node:fs';
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    assetsInlineLimit: 0,
  },
  server: { proxy: { '/api': 'http://127.0.0.1:8080' } },
  plugins: [
    {
      // The API description travels with the UI: served as /openapi.yaml.
      name: 'copy-openapi',
      closeBundle() {
        mkdirSync('dist', { recursive: true });
        copyFileSync('openapi.yaml', 'dist/openapi.yaml');
      },
    },
  ],
});
