// Quiet logs in tests unless TEST_LOG_LEVEL asks for them (gateways started by tests set their own).
import { configureLogger } from '../src/logger.ts';

configureLogger((process.env.TEST_LOG_LEVEL as 'silent' | undefined) ?? 'silent');
