// Oversight's own behaviour. No inline scripts anywhere (CSP): pages opt in with data- attributes.
"use strict";
