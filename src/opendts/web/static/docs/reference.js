// The API reference at /docs: Swagger UI (vendored, see SOURCE.md) reading this server's own
// OpenAPI document. Nothing loads from another origin, and no script is inline, so the page
// works offline and under a Content-Security-Policy of 'self'.
"use strict";

window.ui = SwaggerUIBundle({
  url: "/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null, // the default asks a public validator about the document
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  defaultModelsExpandDepth: 0,
  displayOperationId: true,
});
