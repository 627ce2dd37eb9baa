// Renders /openapi.json with Swagger UI; "Try it out" calls this same Worker.
window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true, tryItOutEnabled: true })
